-- People (Rinha 2023). Rows arrive in batches from `arena inserter`; `json` is the person as the
-- API serialised it once (served as is by search and by id), `busca` the lowercase apelido,
-- nome and stack on separate lines that a trigram index makes `LIKE '%term%'` fast over.
-- The stack is not a column of its own: nothing queries it apart from `busca` and `json`.
CREATE TABLE IF NOT EXISTS pessoas (
    id         uuid PRIMARY KEY,
    apelido    varchar(32) NOT NULL,
    nome       varchar(100) NOT NULL,
    nascimento date NOT NULL,
    busca      text NOT NULL,
    json       text NOT NULL,
    CONSTRAINT pessoas_apelido_key UNIQUE (apelido)
);

CREATE INDEX IF NOT EXISTS pessoas_busca_trgm ON pessoas USING gin (busca gin_trgm_ops);
