-- The SQLite database of docs/radius/mods/sql: the usual FreeRADIUS tables, with the columns
-- hotspotd's set-up uses. Create it with `sqlite3 hotspotd-radius.sqlite < schema.sql`.

-- Write-ahead logging (kept in the file): logins read while accounting writes, instead of
-- waiting for each other's locks.
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS radcheck (
	id INTEGER PRIMARY KEY,
	username TEXT NOT NULL DEFAULT '',
	attribute TEXT NOT NULL DEFAULT '',
	op TEXT NOT NULL DEFAULT '==',
	value TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS radcheck_username ON radcheck (username);

CREATE TABLE IF NOT EXISTS radreply (
	id INTEGER PRIMARY KEY,
	username TEXT NOT NULL DEFAULT '',
	attribute TEXT NOT NULL DEFAULT '',
	op TEXT NOT NULL DEFAULT '=',
	value TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS radreply_username ON radreply (username);

CREATE TABLE IF NOT EXISTS radacct (
	radacctid INTEGER PRIMARY KEY,
	acctsessionid TEXT NOT NULL DEFAULT '',
	acctuniqueid TEXT NOT NULL UNIQUE,
	username TEXT NOT NULL DEFAULT '',
	nasidentifier TEXT NOT NULL DEFAULT '',
	acctstarttime INTEGER,
	acctupdatetime INTEGER,
	acctstoptime INTEGER,
	acctinterval TEXT,
	acctsessiontime INTEGER NOT NULL DEFAULT 0,
	acctinputoctets INTEGER NOT NULL DEFAULT 0,
	acctoutputoctets INTEGER NOT NULL DEFAULT 0,
	calledstationid TEXT NOT NULL DEFAULT '',
	callingstationid TEXT NOT NULL DEFAULT '',
	framedipaddress TEXT NOT NULL DEFAULT '',
	acctterminatecause TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS radacct_username ON radacct (username);
