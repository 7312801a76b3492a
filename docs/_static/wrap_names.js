// The sidebar's API entries (bm.metrics.balanced_accuracy, bm.peers.LogisticRegressionPeer) wrap after a dot or an
// underscore when they do not fit, never inside a word: a break opportunity (<wbr>) follows each dot and underscore.
document.addEventListener("DOMContentLoaded", () => {
  for (const link of document.querySelectorAll("nav.bd-links a.reference")) {
    const name = link.textContent.trim();
    if (link.children.length || !/^[A-Za-z_][\w.]*$/.test(name) || !/[._]/.test(name)) continue;
    link.textContent = "";
    for (const part of name.split(/(?<=[._])/)) {
      link.append(part, document.createElement("wbr"));
    }
  }
});
