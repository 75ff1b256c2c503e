// Berth portal: progressive enhancement only — every page works without this file.
// Copy buttons: a button with data-copy copies the text of the <code> in its .command box.
"use strict";
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const code = button.closest(".command").querySelector("code");
    let done = false;
    try {
      await navigator.clipboard.writeText(code.textContent);
      done = true;
    } catch {
      // Not a secure context (plain http to a host name): copy the selection instead.
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done = document.execCommand("copy");
    }
    button.textContent = done ? "Copied" : "Press Ctrl+C";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}
// Sortable tables: a header button with data-sort sorts its table's body by that column.
// Without the script the header shows its plain label (the span after the button).
for (const button of document.querySelectorAll("th button[data-sort]")) {
  button.hidden = false;
  button.nextElementSibling.hidden = true;
  button.addEventListener("click", () => {
    const th = button.closest("th");
    const table = th.closest("table");
    const column = [...th.parentElement.children].indexOf(th);
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    for (const other of th.parentElement.children) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const key = (row) => {
      const cell = row.children[column];
      return cell.dataset.key ?? cell.textContent.trim();
    };
    const rows = [...table.tBodies[0].rows];
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      const nx = Number(x), ny = Number(y);
      const order = x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    });
    table.tBodies[0].append(...rows);
  });
}
