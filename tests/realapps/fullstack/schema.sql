CREATE TABLE "user" (id uuid PRIMARY KEY, email text NOT NULL, full_name text, is_active boolean NOT NULL,
                     is_superuser boolean NOT NULL, token text NOT NULL UNIQUE);
CREATE TABLE item (id uuid PRIMARY KEY, title text NOT NULL, description text,
                   owner_id uuid NOT NULL REFERENCES "user"(id));
INSERT INTO "user" SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 'user' || g || '@example.com',
                          'User ' || g, true, g = 1, 'tok' || g FROM generate_series(1, 12) g;
INSERT INTO item SELECT ('10000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 'Item ' || g, 'about item ' || g,
                        ('00000000-0000-0000-0000-' || lpad((1 + g % 12)::text, 12, '0'))::uuid
  FROM generate_series(1, 120) g;
