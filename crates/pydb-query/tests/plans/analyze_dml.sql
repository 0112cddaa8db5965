-- EXPLAIN ANALYZE of INSERT, UPDATE and DELETE runs them: the top line's
-- actual rows are the rows written.
UPDATE customers SET age = age + 1 WHERE city = 'Paris';
DELETE FROM orders WHERE customer_id = 3;
INSERT INTO notes SELECT id, name FROM customers WHERE id < 4;
INSERT INTO notes VALUES (10, 'x'), (11, 'y');
SELECT count(*) FROM notes;
DELETE FROM customers WHERE id = 99;
