-- Subqueries: uncorrelated (run once: InitPlan), correlated (per row: SubPlan).
SELECT name FROM customers WHERE age > (SELECT avg(age) FROM customers);
SELECT name, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) FROM customers c WHERE c.id < 3;
SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE amount > 95);
SELECT name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.amount > 96);
SELECT name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id);
SELECT x.city, x.n FROM (SELECT city, count(*) AS n FROM customers GROUP BY city) AS x WHERE x.n > 10;
