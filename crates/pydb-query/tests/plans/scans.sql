-- Sequential scans, filters pushed into them, index scans, primary-key lookups.
SELECT * FROM customers;
SELECT name FROM customers WHERE age > 60;
SELECT * FROM customers WHERE id = 42;
SELECT * FROM customers WHERE city = 'Nice';
SELECT id FROM orders WHERE customer_id BETWEEN 10 AND 12 AND amount > 50;
SELECT * FROM orders WHERE customer_id = 7 AND status = 'open';
SELECT * FROM notes WHERE body LIKE 'a%';
SELECT 1 + 2;
SELECT * FROM customers WHERE 1 = 0;
