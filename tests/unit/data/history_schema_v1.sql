-- The history database as schema version 1 (0001_conversations_messages_search) leaves it,
-- with a little data: alice's question about 北京 answered twice (the second answer active),
-- and bob's conversation. Frozen: a migration test opens it with today's code.
CREATE TABLE schema_migrations (
    name TEXT PRIMARY KEY,
    applied_at REAL NOT NULL
);
INSERT INTO schema_migrations VALUES ('0001_conversations_messages_search', 1767225600.0);

CREATE TABLE conversations (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    system TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    active_leaf_id TEXT,
    source_key TEXT NOT NULL
);
CREATE INDEX conversations_by_user ON conversations (user, updated_at DESC, seq DESC);
CREATE UNIQUE INDEX conversations_by_source ON conversations (user, source_key);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    parent_id TEXT REFERENCES messages (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('streaming', 'complete', 'cut_short')),
    created_at REAL NOT NULL,
    written_at REAL NOT NULL,
    model TEXT,
    quantization TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    time_to_first_token_s REAL,
    tokens_per_s REAL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX messages_by_parent ON messages (parent_id);
CREATE INDEX messages_streaming ON messages (state) WHERE state = 'streaming';
CREATE VIEW indexed_messages AS SELECT seq, content FROM messages WHERE state != 'streaming';
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content, content = 'indexed_messages', content_rowid = 'seq', tokenize = 'trigram');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.state != 'streaming'
BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.state != 'streaming'
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, state ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content)
        SELECT 'delete', old.seq, old.content WHERE old.state != 'streaming';
    INSERT INTO messages_fts (rowid, content)
        SELECT new.seq, new.content WHERE new.state != 'streaming';
END;
CREATE VIRTUAL TABLE conversations_fts USING fts5 (
    title, content = 'conversations', content_rowid = 'seq', tokenize = 'trigram');
CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations
BEGIN
    INSERT INTO conversations_fts (rowid, title) VALUES (new.seq, new.title);
END;
CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations
BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, title) VALUES ('delete', old.seq, old.title);
END;
CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations
BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, title) VALUES ('delete', old.seq, old.title);
    INSERT INTO conversations_fts (rowid, title) VALUES (new.seq, new.title);
END;

INSERT INTO conversations VALUES
    (1, 'conv_alice0000000000000000', 'alice', 'Trip to Beijing', NULL, 1767225600.0, 1767225660.0,
     'msg_answer200000000000000', 'jisu:conv_alice0000000000000000'),
    (2, 'conv_bob000000000000000000', 'bob', 'Groceries', 'Answer briefly.', 1767225700.0, 1767225700.0,
     'msg_bob0000000000000000000', 'jisu:conv_bob000000000000000000');
INSERT INTO messages VALUES
    (1, 'msg_question0000000000000', 'conv_alice0000000000000000', NULL, 'user',
     '我昨天去了北京的故宫，今天去哪里？', 'complete', 1767225600.0, 1767225600.0,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (2, 'msg_answer100000000000000', 'conv_alice0000000000000000', 'msg_question0000000000000', 'assistant',
     '可以去颐和园。', 'complete', 1767225610.0, 1767225612.0,
     'qwen2.5-0.5b-instruct', 'iq4_nl', 'stop', 40, 8, 0.12, 31.5),
    (3, 'msg_answer200000000000000', 'conv_alice0000000000000000', 'msg_question0000000000000', 'assistant',
     '长城也很好，可以坐火车去八达岭。', 'cut_short', 1767225650.0, 1767225660.0,
     'qwen2.5-0.5b-instruct', 'iq4_nl', 'cancelled', 40, 14, 0.10, 30.2),
    (4, 'msg_bob0000000000000000000', 'conv_bob000000000000000000', NULL, 'user',
     'Milk, eggs, bread.', 'complete', 1767225700.0, 1767225700.0,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL);
