-- The example warehouse. brazecfg builds warehouse.db from this file when it does not exist;
-- delete warehouse.db to start over. Change a row (sqlite3 warehouse.db) and run plan again.
-- updated_at columns are kept by triggers, as a warehouse's loader would: brazecfg uses them
-- to read only the records changed since the last apply.
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT,
  first_name TEXT,
  last_name TEXT,
  country TEXT,
  updated_at TEXT NOT NULL
);
INSERT INTO users VALUES
  (1,  'ada@example.com',     'Ada',     'Lovelace',  'GB', '2026-01-05 09:00:00'),
  (2,  'alan@example.com',    'Alan',    'Turing',    'GB', '2026-01-05 09:00:00'),
  (3,  'grace@example.com',   'Grace',   'Hopper',    'US', '2026-01-05 09:00:00'),
  (4,  'edsger@example.com',  'Edsger',  'Dijkstra',  'NL', '2026-01-05 09:00:00'),
  (5,  'barbara@example.com', 'Barbara', 'Liskov',    'US', '2026-01-05 09:00:00'),
  (6,  'donald@example.com',  'Donald',  'Knuth',     'US', '2026-01-05 09:00:00'),
  (7,  'margaret@example.com','Margaret','Hamilton',  'US', '2026-01-05 09:00:00'),
  (8,  'john@example.com',    'John',    'McCarthy',  'US', '2026-01-05 09:00:00'),
  (9,  'frances@example.com', 'Frances', 'Allen',     'US', '2026-01-05 09:00:00'),
  (10, 'tim@example.com',     'Tim',     'Berners-Lee','GB', '2026-01-05 09:00:00'),
  (11, 'not-an-email',        'Niklaus', 'Wirth',     'CH', '2026-01-05 09:00:00'),
  (12, 'radia@example.com',   'Radia',   'Perlman',   NULL, '2026-01-05 09:00:00');
CREATE TABLE purchases (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL,
  product TEXT NOT NULL,
  amount REAL NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL DEFAULT '2026-10-01 00:00:00'
);
INSERT INTO purchases (id, user_id, product, amount, status, created_at) VALUES
  (1,  1, 'engine',    120.00, 'paid',     '2026-02-01 10:00:00'),
  (2,  1, 'notebook',   15.50, 'paid',     '2026-03-01 10:00:00'),
  (3,  2, 'enigma',     80.00, 'paid',     '2026-02-11 12:30:00'),
  (4,  2, 'tape',       30.00, 'refunded', '2026-02-12 12:30:00'),
  (5,  3, 'compiler',  250.00, 'paid',     '2026-01-20 08:00:00'),
  (6,  4, 'semaphore',  12.00, 'paid',     '2026-04-02 16:45:00'),
  (7,  5, 'clu',        99.50, 'paid',     '2026-05-05 05:05:05'),
  (8,  5, 'clu-pro',     0.50, 'paid',     '2026-05-06 05:05:05'),
  (9,  6, 'tex',       300.00, 'paid',     '2026-06-01 00:00:00'),
  (10, 6, 'metafont',   45.00, 'pending',  '2026-06-02 00:00:00'),
  (11, 7, 'apollo',    500.00, 'paid',     '2026-07-20 20:17:00'),
  (12, 9, 'ptran',      60.00, 'paid',     '2026-08-08 08:08:08'),
  (13, 10,'www',        10.00, 'paid',     '2026-09-09 09:09:09');

CREATE TRIGGER users_touch AFTER UPDATE ON users BEGIN
  UPDATE users SET updated_at = datetime('now') WHERE id = NEW.id;
END;
CREATE TRIGGER purchases_touch AFTER UPDATE ON purchases BEGIN
  UPDATE purchases SET updated_at = datetime('now') WHERE id = NEW.id;
END;
CREATE TRIGGER purchases_stamp AFTER INSERT ON purchases BEGIN
  UPDATE purchases SET updated_at = datetime('now') WHERE id = NEW.id;
END;
