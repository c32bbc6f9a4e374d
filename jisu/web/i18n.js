// Interface strings in Chinese and English. The language follows the browser (zh* → Chinese)
// until the user picks one with the header toggle; that choice is kept in localStorage.
// Static elements name their string with data-i18n (text), data-i18n-aria (aria-label and
// title), data-i18n-placeholder; dynamic ones call t() when they are built.

const STRINGS = {
  zh: {
    appTitle: "极速 jisu",
    newChat: "新对话",
    searchPlaceholder: "搜索对话",
    searchLabel: "搜索对话",
    conversations: "对话列表",
    noConversations: "还没有对话",
    noMatches: "没有匹配的对话",
    untitled: "新对话",
    rename: "重命名",
    renameLabel: "对话标题",
    delete: "删除",
    deleteTitle: "删除对话？",
    deleteBody: "“{title}”将从本浏览器中永久删除。",
    cancel: "取消",
    confirm: "确定",
    save: "保存",
    openSidebar: "打开侧边栏",
    closeSidebar: "关闭侧边栏",
    toggleSidebar: "显示或隐藏侧边栏",
    settings: "设置",
    settingsTitle: "设置",
    close: "关闭",
    langToggle: "Switch to English",
    langToggleText: "EN",
    themeToggle: "切换主题（当前：{mode}）",
    themeSystem: "跟随系统",
    themeLight: "浅色",
    themeDark: "深色",
    theme: "主题",
    language: "界面语言",
    temperature: "温度（temperature）",
    temperatureHelp: "0 表示确定性输出，越高越有创意。",
    maxTokens: "最大生成 tokens（max_tokens）",
    maxTokensHelp: "单条回答最多生成的 token 数。",
    role: "角色",
    roleLabel: "选择角色 / 系统提示词",
    systemPrompt: "系统提示词",
    systemPromptHelp: "修改后即为“自定义”角色，作用于当前对话之后的回答和新对话。",
    roleCustom: "自定义",
    modelLoading: "正在连接模型…",
    modelUnknown: "模型信息不可用",
    contextSize: "上下文 {n} tokens",
    inputPlaceholder: "输入消息，Enter 发送，Shift+Enter 换行",
    inputLabel: "消息",
    send: "发送",
    stop: "停止生成",
    stopping: "正在停止…",
    you: "你",
    assistant: "助手",
    copy: "复制",
    copied: "已复制",
    copyCode: "复制代码",
    edit: "编辑",
    editLabel: "编辑消息",
    saveAndSend: "保存并发送",
    regenerate: "重新生成",
    retry: "重试",
    thinking: "正在思考…",
    queued: "排队中（前面还有 {n} 个）",
    reading: "正在读取提示词 {processed}/{total}",
    statsTtft: "首字 {s} 秒",
    statsSpeed: "{n} tokens/秒",
    statsTokens: "{n} tokens",
    finishLength: "已达到最大 tokens，回答被截断",
    finishCancelled: "已停止",
    finishInterrupted: "连接中断，回答不完整",
    finishShutdown: "服务器已停止，回答不完整",
    emptyCancelled: "（在输出任何内容前已停止）",
    welcomeTitle: "有什么可以帮你？",
    welcomeSub: "本地运行，无需 GPU，数据不出这台机器。",
    suggestion1: "用一句话介绍北京。",
    suggestion2: "写一个 JavaScript 防抖函数。",
    suggestion3: "把“知之为知之，不知为不知”翻译成英文。",
    disclaimer: "小模型也会出错，请核实重要信息。",
    connLost: "无法连接到服务器，{s} 秒后重试…",
    connConnecting: "正在连接服务器…",
    connRetry: "立即重试",
    errNotConnected: "未连接到服务器，消息未发送。",
    errDisconnected: "与服务器的连接中断了。已保留已生成的部分。",
    keyTitle: "需要访问密钥",
    keyBody: "这台 jisu 服务器需要访问密钥。请打开服务器启动时打印的链接，或向管理员索取密钥。",
    keyLabel: "访问密钥",
    keyWrong: "密钥不正确，请重新输入。",
    keySubmit: "连接",
    keyNeeded: "需要访问密钥才能使用这台服务器。",
    unanswered: "这条消息还没有回答。",
    errBusy: "服务器繁忙（请求太多），请稍后重试。",
    errGeneric: "出错了：{message}",
    overflowTitle: "对话超出了模型的上下文长度",
    overflowText: "模型上下文为 {ctx} tokens，而这次请求需要 {prompt} 个提示词 tokens + {max} 个生成 tokens。",
    overflowTooLong: "即使删除所有较早的对话，最后这条消息仍然太长。请缩短消息或在设置中调低最大生成 tokens。",
    overflowNewChat: "开始新对话",
    overflowTrim: "删除最早的对话轮次并重发",
    trimmedNotice: "为适应上下文，删除了最早的 {n} 轮对话（不再发送给模型）：",
    trimmedUser: "你",
    trimmedAssistant: "助手",
    fallbackPrefix: "注意：",
    presets: {
      general: ["通用助手", "你是一个乐于助人的中文助手。回答准确、简洁、有条理；不确定时请直说不知道，不要编造。"],
      frontend: ["前端工程师", "你是一名资深前端工程师，精通 HTML、CSS、JavaScript/TypeScript 和主流框架。回答时给出可以直接运行的代码，放在标明语言的 Markdown 代码块里，并简要说明思路和注意事项。"],
      teacher: ["语文老师", "你是一名耐心的中学语文老师。讲解字词、古诗文和写作时条理清晰、举例恰当；批改时先肯定优点，再指出问题并给出修改示范。"],
      translator: ["翻译", "你是一名专业翻译。用户输入中文时，译成自然地道的英文；输入其他语言时，译成通顺的简体中文。只输出译文，不要解释。"],
    },
  },
  en: {
    appTitle: "jisu 极速",
    newChat: "New chat",
    searchPlaceholder: "Search chats",
    searchLabel: "Search chats",
    conversations: "Conversations",
    noConversations: "No conversations yet",
    noMatches: "No matching conversations",
    untitled: "New chat",
    rename: "Rename",
    renameLabel: "Conversation title",
    delete: "Delete",
    deleteTitle: "Delete conversation?",
    deleteBody: "“{title}” will be permanently deleted from this browser.",
    cancel: "Cancel",
    confirm: "OK",
    save: "Save",
    openSidebar: "Open sidebar",
    closeSidebar: "Close sidebar",
    toggleSidebar: "Show or hide the sidebar",
    settings: "Settings",
    settingsTitle: "Settings",
    close: "Close",
    langToggle: "切换到中文",
    langToggleText: "中",
    themeToggle: "Switch theme (now: {mode})",
    themeSystem: "System",
    themeLight: "Light",
    themeDark: "Dark",
    theme: "Theme",
    language: "Language",
    temperature: "Temperature",
    temperatureHelp: "0 is deterministic; higher is more creative.",
    maxTokens: "Max tokens",
    maxTokensHelp: "The most tokens one answer may have.",
    role: "Role",
    roleLabel: "Role / system prompt",
    systemPrompt: "System prompt",
    systemPromptHelp: "Editing it switches to the Custom role, for later answers in this chat and for new chats.",
    roleCustom: "Custom",
    modelLoading: "Connecting to the model…",
    modelUnknown: "Model info unavailable",
    contextSize: "context {n} tokens",
    inputPlaceholder: "Message… (Enter to send, Shift+Enter for a new line)",
    inputLabel: "Message",
    send: "Send",
    stop: "Stop generating",
    stopping: "Stopping…",
    you: "You",
    assistant: "Assistant",
    copy: "Copy",
    copied: "Copied",
    copyCode: "Copy code",
    edit: "Edit",
    editLabel: "Edit message",
    saveAndSend: "Save & send",
    regenerate: "Regenerate",
    retry: "Retry",
    thinking: "Thinking…",
    queued: "Queued ({n} ahead)",
    reading: "Reading the prompt {processed}/{total}",
    statsTtft: "first token {s} s",
    statsSpeed: "{n} tokens/s",
    statsTokens: "{n} tokens",
    finishLength: "hit max tokens, answer cut short",
    finishCancelled: "stopped",
    finishInterrupted: "connection lost, answer incomplete",
    finishShutdown: "the server stopped, answer incomplete",
    emptyCancelled: "(stopped before any output)",
    welcomeTitle: "How can I help?",
    welcomeSub: "Runs locally on CPU; your data stays on this machine.",
    suggestion1: "Introduce Beijing in one sentence.",
    suggestion2: "Write a debounce function in JavaScript.",
    suggestion3: "Translate “学而时习之” into English.",
    disclaimer: "Small models make mistakes. Check important information.",
    connLost: "Cannot reach the server. Retrying in {s} s…",
    connConnecting: "Connecting to the server…",
    connRetry: "Retry now",
    errNotConnected: "Not connected to the server; the message was not sent.",
    errDisconnected: "The connection to the server was lost. The partial answer was kept.",
    keyTitle: "Access key needed",
    keyBody: "This jisu server needs an access key. Open the link the server printed when it started, or ask whoever runs it for the key.",
    keyLabel: "Access key",
    keyWrong: "That key was not accepted. Please try again.",
    keySubmit: "Connect",
    keyNeeded: "An access key is needed to use this server.",
    unanswered: "This message has no answer yet.",
    errBusy: "The server is busy (too many requests). Please try again shortly.",
    errGeneric: "Something went wrong: {message}",
    overflowTitle: "The conversation is longer than the model's context",
    overflowText: "The model's context is {ctx} tokens, but this request needs {prompt} prompt tokens + {max} tokens for the answer.",
    overflowTooLong: "Even without all earlier turns, the last message is too long. Shorten it, or lower max tokens in Settings.",
    overflowNewChat: "Start a new chat",
    overflowTrim: "Trim oldest turns and resend",
    trimmedNotice: "To fit the context, the {n} oldest turn(s) were dropped (no longer sent to the model):",
    trimmedUser: "You",
    trimmedAssistant: "Assistant",
    fallbackPrefix: "Note: ",
    presets: {
      general: ["General assistant", "You are a helpful assistant. Answer accurately, concisely and in a well-organised way. If you are not sure, say so instead of making things up."],
      frontend: ["Front-end engineer", "You are a senior front-end engineer, expert in HTML, CSS, JavaScript/TypeScript and the major frameworks. Give code that runs as-is, in Markdown code blocks labelled with their language, and briefly explain the approach and pitfalls."],
      teacher: ["Chinese teacher", "You are a patient Chinese-language teacher. Explain characters, classical poems and writing clearly with good examples; when correcting, first note what is good, then point out problems and show a revised version."],
      translator: ["Translator", "You are a professional translator. Translate Chinese input into natural English, and input in any other language into fluent Simplified Chinese. Output only the translation, without explanations."],
    },
  },
};

export const PRESET_KEYS = ["general", "frontend", "teacher", "translator"];
const LANG_KEY = "jisu.lang";
let lang = initialLang();

function initialLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved === "zh" || saved === "en") return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function getLang() {
  return lang;
}

export function setLang(next) {
  lang = next === "zh" ? "zh" : "en";
  localStorage.setItem(LANG_KEY, lang);
  applyI18n(document);
}

/** The string for `key` in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  const value = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return String(value).replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

/** [label, system prompt] of a preset role in the given (or current) language. */
export function preset(key, language = lang) {
  return STRINGS[language].presets[key];
}

/** Is `text` one of the preset prompts, in either language? Then the role is that preset. */
export function presetOf(text) {
  for (const language of Object.keys(STRINGS)) {
    for (const key of PRESET_KEYS) {
      if (STRINGS[language].presets[key][1] === text) return key;
    }
  }
  return null;
}

export function applyI18n(root) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
    if (el.tagName === "BUTTON") el.title = t(el.dataset.i18nAria); // icon buttons: a tooltip too
  }
}
