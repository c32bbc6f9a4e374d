// Runs in <head> before first paint: apply the saved (or the system's) light/dark theme, so a
// dark-mode user never sees a white flash. app.js takes over after load (applyTheme there).
(function () {
  var theme = "system";
  try {
    theme = JSON.parse(localStorage.getItem("jisu.settings") || "{}").theme || "system";
  } catch (e) { /* corrupt settings: fall back to the system theme */ }
  var dark = theme === "dark" || (theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  document.getElementById("hljs-light").disabled = dark;
  document.getElementById("hljs-dark").disabled = !dark;
})();
