-- The example fixture of the postgres-fixture recipe: a small shop, loaded
-- into the database "postgres" (schema public) before the snapshot.
-- Replace it with your own: any SQL psql runs.

CREATE TABLE customers (
    id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL,
    email   text NOT NULL UNIQUE,
    country text NOT NULL,
    joined  date NOT NULL
);

CREATE TABLE products (
    id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku   text NOT NULL UNIQUE,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock integer NOT NULL DEFAULT 0
);

CREATE TABLE orders (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    placed_at   timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'paid', 'shipped', 'cancelled'))
);

CREATE TABLE order_items (
    order_id   integer NOT NULL REFERENCES orders ON DELETE CASCADE,
    product_id integer NOT NULL REFERENCES products,
    quantity   integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

INSERT INTO customers (name, email, country, joined) VALUES
    ('Ada Lovelace', 'ada@example.org', 'GB', '2023-01-15'),
    ('Grace Hopper', 'grace@example.org', 'US', '2023-03-02'),
    ('Edsger Dijkstra', 'edsger@example.org', 'NL', '2023-06-21'),
    ('Barbara Liskov', 'barbara@example.org', 'US', '2024-02-10');

INSERT INTO products (sku, name, price, stock) VALUES
    ('KB-01', 'Mechanical keyboard', 89.90, 12),
    ('MS-02', 'Wireless mouse', 24.50, 40),
    ('MN-27', '27-inch monitor', 279.00, 5),
    ('CB-10', 'USB-C cable', 9.99, 150),
    ('HD-05', 'Noise-cancelling headphones', 199.00, 8);

INSERT INTO orders (customer_id, placed_at, status) VALUES
    (1, '2024-05-01 10:15:00+00', 'shipped'),
    (2, '2024-05-03 16:40:00+00', 'paid'),
    (1, '2024-05-20 09:05:00+00', 'open'),
    (3, '2024-06-11 12:00:00+00', 'cancelled');

INSERT INTO order_items (order_id, product_id, quantity) VALUES
    (1, 1, 1), (1, 4, 2),
    (2, 3, 2), (2, 2, 1),
    (3, 5, 1),
    (4, 4, 3);

-- What each order is worth, for queries that need no joins.
CREATE VIEW order_totals AS
SELECT o.id AS order_id, c.name AS customer, o.status,
       sum(oi.quantity * p.price) AS total
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_items oi ON oi.order_id = o.id
JOIN products p ON p.id = oi.product_id
GROUP BY o.id, c.name, o.status;
