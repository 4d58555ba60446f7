// The staff page: send the demand to /api/v1/match, show the ranked, explained list.
// Every string from the user or the server goes into the DOM through textContent or text nodes,
// never innerHTML, so a demand or an expert name holding "<script>" shows as text.
"use strict";

const FIELD_NAMES = {
  research_fields: "研究方向", bio: "简介", paper: "论文", patent: "专利",
  project: "项目", achievement: "成果",
};

let lastRequest = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// The server's terms are normalised (NFKC, lower case), so compare against a folded copy of the
// text, keeping for each folded character the position of the original one it came from.
function fold(text) {
  let folded = "";
  const origin = [];
  for (let i = 0; i < text.length;) {
    const ch = String.fromCodePoint(text.codePointAt(i));
    const f = ch.normalize("NFKC").toLowerCase();
    for (let k = 0; k < f.length; k++) origin.push(i);
    folded += f;
    i += ch.length;
  }
  origin.push(text.length);
  return { folded, origin };
}

// Append `text` to `parent`, wrapping every occurrence of a term in its own <mark>.
function appendHighlighted(parent, text, terms) {
  const { folded, origin } = fold(text);
  const owner = new Int32Array(text.length).fill(-1); // which occurrence covers each character
  const wanted = [...new Set(terms.map((t) => String(t).normalize("NFKC").toLowerCase()).filter(Boolean))]
    .sort((a, b) => b.length - a.length);
  let found = 0;
  for (const term of wanted) {
    for (let pos = folded.indexOf(term); pos !== -1; pos = folded.indexOf(term, pos + term.length)) {
      const start = origin[pos];
      const end = origin[pos + term.length];
      if (owner.subarray(start, end).some((o) => o !== -1)) continue; // a longer term covers it
      owner.fill(found++, start, end);
    }
  }
  let i = 0;
  while (i < text.length) {
    let j = i;
    while (j < text.length && owner[j] === owner[i]) j++;
    const piece = text.slice(i, j);
    parent.append(owner[i] === -1 ? document.createTextNode(piece) : el("mark", { text: piece }));
    i = j;
  }
}

// state: "busy" while waiting, then "done" or "error" (also what the browser tests wait for).
function setStatus(message, state) {
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = state === "error" ? "error" : "";
  status.dataset.state = state;
}

function showDemand(text, terms, caption) {
  const p = document.getElementById("demand-text");
  p.replaceChildren();
  appendHighlighted(p, text, terms);
  document.getElementById("demand-caption").textContent = caption;
  document.getElementById("demand-view").hidden = false;
}

function allTerms(matches) {
  return matches.flatMap((m) => m.explanation.terms);
}

// A long piece (a bio, an abstract) is cut to a window around its first matched term.
function excerpt(text, terms, size = 110) {
  if (text.length <= size) return text;
  const { folded, origin } = fold(text);
  let first = text.length;
  for (const t of terms) {
    const pos = folded.indexOf(String(t).normalize("NFKC").toLowerCase());
    if (pos !== -1) first = Math.min(first, origin[pos]);
  }
  const start = first === text.length ? 0 : Math.max(0, first - 30);
  const end = Math.min(text.length, start + size);
  return (start > 0 ? "…" : "") + text.slice(start, end) + (end < text.length ? "…" : "");
}

function evidenceCell(match, text, rows) {
  const cell = el("td", { class: "evidence" });
  const terms = match.explanation.terms;
  for (const ev of match.explanation.evidence) {
    const line = el("div", { class: "evidence-item" }, el("span", { class: "field", text: FIELD_NAMES[ev.field] || ev.field }));
    const evTerms = ev.terms.length ? ev.terms : terms;
    appendHighlighted(line, excerpt(ev.text, evTerms), evTerms);
    cell.append(line);
  }
  const chips = el("div", { class: "terms" }, el("span", { class: "label", text: "匹配词：" }));
  terms.slice(0, 12).forEach((t, k) => {
    if (k) chips.append("、");
    chips.append(el("span", { class: "term", text: t }));
  });
  const show = el("button", { type: "button", class: "link", text: "在需求中标出" });
  show.addEventListener("click", () => {
    for (const r of rows) r.classList.remove("selected");
    show.closest("tr").classList.add("selected");
    showDemand(text, terms, `（标黄的是与 ${match.expert.name || match.expert.id} 匹配的词）`);
  });
  chips.append(" ", show);
  cell.append(chips);
  return cell;
}

function renderResults(text, payload) {
  const tbody = document.querySelector("#results-table tbody");
  tbody.replaceChildren();
  const rows = [];
  for (const m of payload.data) {
    const e = m.expert;
    const link = el("a", { href: "/experts/" + encodeURIComponent(e.id), target: "_blank", rel: "noopener", text: e.name || e.id });
    // Paused experts (暂停推荐) stay in a live ranking, flagged: the nightly batch leaves them out.
    const paused = m.paused ? el("div", { class: "badge paused", text: `暂停推荐至 ${m.paused.until}` + (m.paused.reason ? `（${m.paused.reason}）` : "") }) : null;
    const row = el("tr", {},
      el("td", { class: "num", text: String(m.rank) }),
      el("td", { class: "name" }, link, paused),
      el("td", { text: e.title }),
      el("td", { text: e.institution }),
      el("td", { text: e.region }),
      el("td", { class: "num", text: m.score.toFixed(3) }),
    );
    rows.push(row);
    row.append(evidenceCell(m, text, rows));
    tbody.append(row);
  }
  document.getElementById("count").textContent = `（${payload.count} 位）`;
  document.getElementById("results").hidden = payload.count === 0;
  showDemand(text, allTerms(payload.data), "（标黄的是与推荐专家匹配的词）");
}

function requestBody() {
  return {
    text: document.getElementById("demand").value,
    top_k: Number(document.getElementById("top-k").value),
    filters: {
      region: document.getElementById("region").value.trim(),
      title: document.getElementById("title").value.trim(),
      exclude_institutions: [],
    },
  };
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `服务器返回 ${response.status}`;
}

async function runMatch(event) {
  event.preventDefault();
  const body = requestBody();
  if (!body.text.trim()) {
    setStatus("请先填写企业需求。", "error");
    return;
  }
  const button = document.getElementById("match-button");
  button.disabled = true;
  setStatus("正在匹配…", "busy");
  const started = performance.now();
  try {
    const response = await fetch("/api/v1/match", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      setStatus(await errorMessage(response), "error");
      return;
    }
    const payload = await response.json();
    lastRequest = body;
    renderResults(body.text, payload);
    document.getElementById("download").disabled = payload.count === 0;
    const ms = Math.round(performance.now() - started);
    setStatus(payload.count ? `找到 ${payload.count} 位专家，用时 ${ms} 毫秒。` : "没有专家与这段需求有共同的词，请换个说法或减少筛选条件。", "done");
  } catch (err) {
    setStatus("无法连接服务器：" + err, "error");
  } finally {
    button.disabled = false;
  }
}

async function download() {
  if (!lastRequest) return;
  setStatus("正在生成 Excel…", "busy");
  const response = await fetch("/api/v1/match.xlsx", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(lastRequest),
  });
  if (!response.ok) {
    setStatus(await errorMessage(response), "error");
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: "专家匹配结果.xlsx" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  setStatus("已下载 Excel。", "done");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("match-form").addEventListener("submit", runMatch);
  document.getElementById("download").addEventListener("click", download);
  document.getElementById("demand").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) document.getElementById("match-form").requestSubmit();
  });
});
