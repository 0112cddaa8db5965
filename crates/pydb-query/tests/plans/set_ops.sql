-- UNION, UNION ALL, INTERSECT, EXCEPT.
SELECT id FROM customers UNION SELECT customer_id FROM orders;
SELECT city FROM customers WHERE age > 60 UNION ALL SELECT city FROM customers WHERE age < 22;
SELECT id FROM customers INTERSECT SELECT customer_id FROM orders WHERE amount > 90;
SELECT id FROM products EXCEPT SELECT product_id FROM items;
