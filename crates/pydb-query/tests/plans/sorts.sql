-- ORDER BY, top-N (ORDER BY ... LIMIT), plain LIMIT and OFFSET.
SELECT * FROM orders ORDER BY amount DESC, id;
SELECT id, amount FROM orders ORDER BY amount DESC LIMIT 5;
SELECT id FROM orders ORDER BY id LIMIT 10 OFFSET 20;
SELECT name FROM customers LIMIT 3;
SELECT name FROM customers WHERE age < 30 ORDER BY age NULLS LAST;
