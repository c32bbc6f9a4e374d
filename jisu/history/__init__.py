"""The conversation store: every user's conversations, kept by the server in one SQLite file.

    store = ConversationStore()  # JISU_HOME/history.db, created 0600, schema brought up to date
    store.recover()  # the server, once at start: answers a dead process left streaming -> cut short
    conversation = store.create_conversation(user, title="Trip")
    question = store.add_message(user, conversation.id, parent_id=None, role="user", content="...")
    history = store.history_for_model(user, conversation.id)  # what to send to the model
    recorder = AnswerRecorder.begin(store, user, conversation.id, parent_id=question.id, model=...)
    recorder.add(piece) ... recorder.finish("stop", AnswerStats(...))

Every method takes the user; another user's ids raise NotFound like missing ones. Modules:
store (the class), db (the file, connections, transactions), migrations (the schema), tree
(branches), search (FTS5 trigram), formats and chatgpt (export and import), recorder (batching
a streamed answer), records (the values returned), errors, ids.
"""

from jisu.history.errors import (
    AnswerNotStreaming, ConversationNotFound, HistoryError, HistoryImportError, MessageNotFound, NotFound,
    SchemaError, StoreClosed,
)
from jisu.history.recorder import AnswerRecorder
from jisu.history.records import (
    COMPLETE, CUT_SHORT, STREAMING, AnswerStats, Conversation, ConversationSummary, ConversationTree,
    ImportResult, Message, Page, SearchHit, Siblings,
)
from jisu.history.store import UNCHANGED, ConversationStore, default_history_path

__all__ = [
    "COMPLETE", "CUT_SHORT", "STREAMING", "UNCHANGED", "AnswerNotStreaming", "AnswerRecorder", "AnswerStats",
    "Conversation", "ConversationNotFound", "ConversationStore", "ConversationSummary", "ConversationTree",
    "HistoryError", "HistoryImportError", "ImportResult", "Message", "MessageNotFound", "NotFound", "Page",
    "SchemaError", "SearchHit", "Siblings", "StoreClosed", "default_history_path",
]
