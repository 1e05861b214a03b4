-- A capture its creating replica leased in the same statement (to send it right after the
-- commit, without a claim) wakes no executor: nobody else could claim it before the lease
-- expires, and the poll finds it then if the replica died.
DROP TRIGGER captures_created ON captures;
CREATE TRIGGER captures_created AFTER INSERT ON captures
    FOR EACH ROW WHEN (NEW.status = 'PENDING' AND NEW.lease_token IS NULL)
    EXECUTE FUNCTION captures_notify();
