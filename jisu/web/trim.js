// Fitting a conversation back into the model's context after `context_length_exceeded`.
//
// The server tells us the prompt's token count and the context size, but not the count per
// message, so we spread the prompt's tokens over the messages by their length (plus a few
// tokens of chat-template markup each), then drop the oldest whole turns (a user message and
// the answers after it) until the estimate leaves room for max_tokens. The system prompt and
// the newest user message always stay. If the estimate was optimistic the server says
// "too long" again and the user can trim again: nothing is ever dropped without a visible
// notice listing what went.

const TEMPLATE_TOKENS = 5; // <|im_start|>role\n … <|im_end|>\n
const SAFETY = 0.9; // aim below the limit: the estimate is rough

/** Which leading messages to drop: {cut, turns, tooLong}. Pure, for easy reasoning. */
export function planTrim(messages, system, error) {
  const contextSize = error.context_size;
  const promptTokens = error.prompt_tokens;
  const maxTokens = error.max_tokens || 0;
  if (!contextSize || !promptTokens) return { cut: 0, turns: 0, tooLong: true };

  const sent = (message) => (message.role === "user" || message.role === "assistant") && message.content;
  const sentMessages = messages.filter(sent);
  const chars = sentMessages.reduce((sum, message) => sum + message.content.length, (system || "").length);
  const count = sentMessages.length + (system ? 1 : 0);
  const perChar = Math.max(0.05, (promptTokens - TEMPLATE_TOKENS * count) / Math.max(1, chars));
  const cost = (message) => (sent(message) ? Math.ceil(message.content.length * perChar) + TEMPLATE_TOKENS : 0);

  const limit = contextSize - maxTokens;
  const userAt = messages.flatMap((message, index) => (message.role === "user" ? [index] : []));
  let estimate = promptTokens;
  let cut = 0;
  let turns = 0;
  // Turn k runs from user message k up to user message k+1; the last turn is never dropped.
  for (let k = 0; k + 1 < userAt.length && estimate > limit * SAFETY; k++) {
    for (let i = cut; i < userAt[k + 1]; i++) estimate -= cost(messages[i]);
    cut = userAt[k + 1];
    turns += 1;
  }
  // Only "too long" when even the estimate without safety margin cannot fit.
  return { cut, turns, tooLong: estimate > limit };
}

/** The conversation after the plan: one notice (merging earlier ones) listing what was dropped. */
export function applyTrim(messages, plan) {
  if (plan.cut === 0) return messages;
  const dropped = messages.slice(0, plan.cut).flatMap((message) => (message.role === "notice" ? message.dropped : [message]));
  const notice = {
    role: "notice",
    kind: "trimmed",
    // A dropped message's files are named, not kept: the notice says what went, and is never sent.
    dropped: dropped.map(({ role, content, attachments }) => ({
      role, content: [...(attachments || []).map((file) => `[${file.name}]`), content].filter(Boolean).join(" "),
    })),
  };
  return [notice, ...messages.slice(plan.cut)];
}
