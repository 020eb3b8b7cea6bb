-- Which replica is calling the webhook for this notification, until when (microseconds since
-- the epoch): two copies of one event handled at the same moment by two replicas call the
-- webhook once.
ALTER TABLE notifications ADD COLUMN claimed_until BIGINT;
