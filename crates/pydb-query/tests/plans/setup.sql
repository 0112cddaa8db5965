-- The database every golden plan test starts from: a small shop.
-- Deterministic data (no random()), so that ANALYZE's statistics and
-- therefore every estimate are the same on every run.
CREATE TABLE digits(d INTEGER);
INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);

CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INTEGER);
INSERT INTO customers
  SELECT a.d * 10 + b.d, 'c' || (a.d * 10 + b.d),
         CASE b.d % 4 WHEN 0 THEN 'Paris' WHEN 1 THEN 'Lyon' WHEN 2 THEN 'Nice' ELSE 'Lille' END,
         20 + (a.d * 7 + b.d * 3) % 50
  FROM digits a, digits b;
CREATE INDEX customers_city ON customers(city);

CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT, price INTEGER);
INSERT INTO products SELECT a.d * 10 + b.d, 'p' || (a.d * 10 + b.d), 1 + (a.d * 13 + b.d * 7) % 100
  FROM digits a, digits b WHERE a.d < 5;

CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER, amount INTEGER, status TEXT);
INSERT INTO orders
  SELECT a.d * 100 + b.d * 10 + c.d, (a.d * 37 + b.d * 11 + c.d) % 100,
         (a.d * 100 + b.d * 10 + c.d) % 97 + 1,
         CASE c.d WHEN 0 THEN 'open' WHEN 1 THEN 'open' ELSE 'shipped' END
  FROM digits a, digits b, digits c;
CREATE INDEX orders_customer ON orders(customer_id);

CREATE TABLE items(order_id INTEGER, product_id INTEGER, qty INTEGER);
INSERT INTO items
  SELECT o.id, (o.id * 7 + d.d) % 50, 1 + d.d FROM orders o, digits d WHERE d.d < 2;
CREATE INDEX items_order ON items(order_id);

-- A table never analyzed: its estimates use the defaults.
CREATE TABLE notes(id INTEGER, body TEXT);
INSERT INTO notes VALUES (1, 'a'), (2, 'b');

ANALYZE customers;
ANALYZE products;
ANALYZE orders;
ANALYZE items;
ANALYZE digits;
