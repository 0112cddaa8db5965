-- Covering (index-only) scans, and sorts that index order replaces: by equality-bound prefixes, and backward scans for DESC.
SELECT id, customer_id FROM orders WHERE customer_id BETWEEN 10 AND 12;
SELECT count(*) FROM orders WHERE customer_id < 5;
SELECT customer_id, count(*) FROM orders WHERE customer_id >= 90 GROUP BY customer_id;
SELECT id FROM orders WHERE customer_id = 7 ORDER BY id;
SELECT id, amount FROM orders WHERE customer_id = 7 ORDER BY id DESC;
SELECT customer_id FROM orders WHERE customer_id > 95 ORDER BY customer_id DESC LIMIT 5;
SELECT id, amount FROM orders WHERE customer_id > 95 ORDER BY customer_id DESC, amount;
SELECT id, name FROM customers ORDER BY id DESC LIMIT 3;
SELECT city, id FROM customers WHERE city = 'Nice' ORDER BY id;
SELECT name FROM customers WHERE city = 'Nice' ORDER BY city, name;
SELECT id FROM orders WHERE customer_id = 7 ORDER BY customer_id DESC, id;
