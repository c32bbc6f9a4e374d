// A conversation as a tree, for the chats this browser keeps itself (history-local.js): the
// same shape the server keeps (jisu/history/tree.py). Editing a message or answering it again
// adds a sibling instead of overwriting, and the branch on show runs from a first message to
// the active leaf. Nodes are kept in the order written, so a parent always comes before its
// children and "the latest" is simply the last one in the list.
//
// A node: {id, parentId (null for a first message), role, content, ...what the role keeps}.

/** The nodes from a first message down to `leafId`, in order ([] for null). */
export function branchTo(nodes, leafId) {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const branch = [];
  for (let node = byId.get(leafId); node; node = byId.get(node.parentId)) branch.push(node);
  return branch.reverse();
}

/** The nodes sharing `node`'s parent, oldest first, as the server says it: {ids, index, count}. */
export function siblingsOf(nodes, node) {
  const ids = nodes.filter((other) => other.parentId === node.parentId).map((other) => other.id);
  return { ids, index: ids.indexOf(node.id), count: ids.length };
}

/** The leaf written last below `id` (itself when nothing is): switching to a sibling shows
 * where that branch was left, as the server's switch does. The last node written below a
 * message is always a leaf, since a child is written after its parent. */
export function latestLeafUnder(nodes, id) {
  const under = new Set([id]);
  let latest = id;
  for (const node of nodes) {
    if (under.has(node.parentId)) {
      under.add(node.id);
      latest = node.id;
    }
  }
  return latest;
}

/** The tree of a stored record. Records from before branches hold a plain list without ids:
 * read as one branch, each message the child of the one before. */
export function treeOf(record) {
  const messages = record.messages || [];
  if (messages.every((message) => message.id)) {
    return { nodes: messages, activeLeafId: record.activeLeafId ?? messages.at(-1)?.id ?? null };
  }
  const nodes = messages.map((message, index) => ({
    ...message, id: `${record.id}.${index}`, parentId: index ? `${record.id}.${index - 1}` : null,
  }));
  return { nodes, activeLeafId: nodes.at(-1)?.id ?? null };
}
