-- Accounts and transactions (SPEC §3, Rinha de Backend 2024).
--
-- The balance lives on the account row and is changed only by the one statement in
-- src/accounts/store.rs, a conditional UPDATE whose row lock serialises writers per account;
-- the CHECK below is the last line of defence, never the mechanism.
CREATE TABLE accounts (
    id     integer PRIMARY KEY,
    limite bigint  NOT NULL CHECK (limite >= 0),
    saldo  bigint  NOT NULL DEFAULT 0,
    CONSTRAINT accounts_saldo_within_limite CHECK (saldo >= -limite)
);

INSERT INTO accounts (id, limite) VALUES
    (1, 100000), (2, 80000), (3, 1000000), (4, 10000000), (5, 500000);

CREATE TABLE transactions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cliente_id   integer     NOT NULL REFERENCES accounts (id),
    valor        bigint      NOT NULL CHECK (valor > 0),
    tipo         char(1)     NOT NULL CHECK (tipo IN ('c', 'd')),
    descricao    varchar(10) NOT NULL CHECK (descricao <> ''),
    realizada_em timestamptz NOT NULL DEFAULT now()
);

-- The extrato's "latest 10 of one account" and /transactions?cliente_id= walk this index
-- backwards from the newest id. Ids of one account grow in commit order because the insert
-- happens under that account's row lock.
CREATE INDEX transactions_cliente_newest ON transactions (cliente_id, id DESC);

-- Accounts opened after the seed (integration tests open their own, so they never race on 1–5).
CREATE SEQUENCE accounts_opened_id START 1000;
