CREATE TABLE users (id integer PRIMARY KEY, username text NOT NULL, bio text, token text UNIQUE);
CREATE TABLE articles (id integer PRIMARY KEY, slug text UNIQUE NOT NULL, title text NOT NULL, body text,
                       author_id integer NOT NULL REFERENCES users(id), favorites integer NOT NULL DEFAULT 0);
CREATE TABLE comments (id serial PRIMARY KEY, article_id integer NOT NULL REFERENCES articles(id), body text);
CREATE TABLE audit (id serial PRIMARY KEY, what text, at timestamptz DEFAULT now());
INSERT INTO users SELECT g, 'user' || g, 'bio of user' || g, 'tok' || g FROM generate_series(1, 20) g;
INSERT INTO articles SELECT g, 'article-' || g, 'Article ' || g, repeat('text ', 20), 1 + g % 20
  FROM generate_series(1, 40) g;
INSERT INTO comments (article_id, body) SELECT 1 + g % 40, 'comment ' || g FROM generate_series(1, 200) g;
