-- Teams: servers (and everything that hangs off them) belong to a team; users are members with a role.
-- Every user has a personal team (a team of one), so existing servers move into their owner's.
CREATE TABLE teams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    -- The user whose personal team this is; NULL for shared teams.
    personal_of INTEGER REFERENCES users(id) ON DELETE CASCADE,
    require_two_factor INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX teams_personal ON teams (personal_of);

CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

-- A member narrowed to some servers of the team (no rows: all of them).
CREATE TABLE team_member_servers (
    team_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id, server_id),
    FOREIGN KEY (team_id, user_id) REFERENCES team_members (team_id, user_id) ON DELETE CASCADE
);

CREATE TABLE team_invitations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    invited_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    accepted_at INTEGER,
    accepted_by INTEGER REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX team_invitations_team ON team_invitations (team_id);

INSERT INTO teams (name, personal_of, created_at) SELECT email, id, created_at FROM users;
INSERT INTO team_members (team_id, user_id, role, created_at)
    SELECT id, personal_of, 'owner', created_at FROM teams;

ALTER TABLE servers ADD COLUMN team_id INTEGER REFERENCES teams(id) ON DELETE CASCADE;
UPDATE servers SET team_id = (SELECT t.id FROM teams t WHERE t.personal_of = servers.user_id);
CREATE INDEX servers_team ON servers (team_id);
