-- Fleet operations: tags that make sets of servers, recipes (a named script, per team) and their runs over
-- many servers (one row per server: its place in the waves, its job, how it ended).
CREATE TABLE server_tags (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (server_id, tag)
);
CREATE INDEX server_tags_tag ON server_tags (tag);

CREATE TABLE recipes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    script TEXT NOT NULL,
    run_as TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE recipe_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipe_id INTEGER NOT NULL REFERENCES recipes(id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    script TEXT NOT NULL,
    run_as TEXT NOT NULL,
    parallel INTEGER NOT NULL,
    canary INTEGER NOT NULL,
    max_failures INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX recipe_runs_status ON recipe_runs (status);

CREATE TABLE recipe_run_servers (
    run_id INTEGER NOT NULL REFERENCES recipe_runs(id) ON DELETE CASCADE,
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    job_id INTEGER,
    exit_code INTEGER,
    duration_ms INTEGER,
    PRIMARY KEY (run_id, server_id)
);
