-- EXPLAIN ANALYZE: actual rows and loops (times masked).
SELECT name FROM customers WHERE age > 60;
SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Lyon';
SELECT o.id, i.qty FROM orders o JOIN items i ON i.order_id = o.id WHERE o.amount > 90;
SELECT name, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) FROM customers c WHERE c.id < 3;
SELECT name FROM customers WHERE age > (SELECT avg(age) FROM customers);
SELECT name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.amount > 96);
SELECT id, amount FROM orders ORDER BY amount DESC LIMIT 5;
SELECT status, count(*) FROM orders GROUP BY status;
SELECT name FROM customers LIMIT 3;
SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE 1 = 0);
