-- People search by a probe: the trigram index is asked for a few characters of the term (the
-- probe, chosen by SearchTerm in src/people/model.rs) and the whole pattern filters what it
-- finds. `busca || ''` keeps the whole pattern out of the index condition: as a second index
-- key it would bring back every one of its trigrams' posting lists.
--
-- enable_seqscan is off inside: pg_trgm estimates a short pattern at ~1 % of the table
-- ('%lfsq%': 462 rows of 44 000, where 5 match), so LIMIT 50 makes a sequential scan look
-- cheap, and it then reads the whole table (26 ms instead of 0.2 through the index). The
-- function is only called with a probe that has trigrams; terms without one are scanned.
CREATE OR REPLACE FUNCTION people_search(probe text, pattern text) RETURNS SETOF text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET enable_seqscan = off
AS $$
    SELECT json FROM pessoas WHERE busca LIKE probe AND (busca || '') LIKE pattern LIMIT 50
$$;
