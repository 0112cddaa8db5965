-- Aggregation with and without GROUP BY, HAVING, DISTINCT.
SELECT count(*) FROM orders;
SELECT status, count(*), sum(amount), avg(amount) FROM orders GROUP BY status;
SELECT customer_id, max(amount) FROM orders GROUP BY customer_id HAVING count(*) > 12;
SELECT count(DISTINCT city) FROM customers;
SELECT DISTINCT city FROM customers;
SELECT city, min(age) FROM customers WHERE age > 30 GROUP BY city ORDER BY city;
