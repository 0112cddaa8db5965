-- Each join kind: hash join on an equality, index nested loop, nested loop
-- on a non-equality, left joins, cross joins, three-way joins.
SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Lyon';
SELECT o.id, i.qty FROM orders o JOIN items i ON i.order_id = o.id WHERE o.amount > 90;
SELECT c.name, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id AND o.status = 'open';
SELECT a.id, b.id FROM products a JOIN products b ON a.price < b.price WHERE a.id < 3 AND b.id < 3;
SELECT count(*) FROM digits a, digits b;
SELECT c.name, p.name FROM customers c JOIN orders o ON o.customer_id = c.id JOIN items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id WHERE c.id = 5;
SELECT n.body, c.name FROM notes n JOIN customers c ON c.id = n.id + 1;
