// The staff page: send the demand to /api/v1/match, show the ranked, explained list.
// Every string from the user or the server goes into the DOM through textContent or text nodes,
// never innerHTML, so a demand or an expert name holding "<script>" shows as text.
"use strict";

const FIELD_NAMES = {
  research_fields: "研究方向", bio: "简介", paper: "论文", patent: "专利",
  project: "项目", achievement: "成果",
};

let lastRequest = null;
// Staff corrections of what the engine understood, for the demand text they were made on.
let edits = { text: null, exclude: [], extra: [] };
const MATCH_NAMES = { chars: "字面相近", dense: "语义相近" };

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

// A long demand is shown folded (a 20,000-character paste would make a page of 9,600 pixels).
const FOLD_CHARS = 600;

function showDemand(text, terms, caption) {
  const p = document.getElementById("demand-text");
  p.replaceChildren();
  appendHighlighted(p, text, terms);
  document.getElementById("demand-caption").textContent = caption;
  const fold = document.getElementById("demand-fold");
  const unfold = document.getElementById("demand-unfold");
  const long = [...text].length > FOLD_CHARS;
  fold.classList.toggle("folded", long);
  unfold.hidden = !long;
  unfold.textContent = "展开全文";
  document.getElementById("demand-view").hidden = false;
}

function toggleFold() {
  const fold = document.getElementById("demand-fold");
  const folded = fold.classList.toggle("folded");
  document.getElementById("demand-unfold").textContent = folded ? "展开全文" : "收起";
}

// The demand's length in characters as the server counts them (code points, not UTF-16 units).
function charCount(text) {
  return [...text].length;
}

function textLimit() {
  return Number(document.getElementById("match-form").dataset.limit) || 20000;
}

function showCount() {
  const n = charCount(document.getElementById("demand").value);
  const limit = textLimit();
  const counter = document.getElementById("char-count");
  counter.textContent = n > limit
    ? `已输入 ${n.toLocaleString("zh-CN")} 字，超过上限 ${limit.toLocaleString("zh-CN")} 字，请删减后再匹配`
    : `已输入 ${n.toLocaleString("zh-CN")} / ${limit.toLocaleString("zh-CN")} 字`;
  counter.classList.toggle("error", n > limit);
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

// The calibrated strength: a level badge (强/中/弱) and the 0-1 score, the same scale on every page.
function strengthCell(strength, level) {
  const cell = el("td", { class: "num strength" });
  if (strength === null || strength === undefined) {
    cell.textContent = "—";
    return cell;
  }
  cell.append(el("span", { class: "level level-" + level, text: level }), strength.toFixed(2));
  cell.title = `匹配强度 ${strength.toFixed(2)}（${level}）：经基准数据校准的相关概率`;
  return cell;
}

function evidenceCell(match, text, rows) {
  const cell = el("td", { class: "evidence" });
  const terms = match.explanation.terms;
  const expanded = match.explanation.expanded || {};
  for (const ev of match.explanation.evidence) {
    const line = el("div", { class: "evidence-item" }, el("span", { class: "field", text: FIELD_NAMES[ev.field] || ev.field }));
    if (MATCH_NAMES[ev.match]) line.append(el("span", { class: "match-kind " + ev.match, text: MATCH_NAMES[ev.match] }));
    const evTerms = ev.terms.length ? ev.terms : terms;
    appendHighlighted(line, excerpt(ev.text, evTerms), evTerms);
    cell.append(line);
  }
  const chips = el("div", { class: "terms" }, el("span", { class: "label", text: "匹配词：" }));
  terms.slice(0, 12).forEach((t, k) => {
    if (k) chips.append("、");
    // a term the demand did not say shows the phrase it was added for: 「腐蚀」← 生锈
    chips.append(expanded[t]
      ? el("span", { class: "term added", title: `系统由「${expanded[t]}」补充`, text: `「${t}」← ${expanded[t]}` })
      : el("span", { class: "term", text: t }));
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

// The strong and medium matches are listed; the weak ones are folded behind "另有 N 位弱匹配".
function renderResults(text, payload) {
  const tbody = document.querySelector("#results-table tbody");
  const weakBody = document.getElementById("weak-rows");
  tbody.replaceChildren();
  weakBody.replaceChildren();
  weakBody.hidden = true;
  const rows = [];
  let weak = 0;
  for (const m of payload.data) {
    const e = m.expert;
    const link = el("a", { href: "/experts/" + encodeURIComponent(e.id), target: "_blank", rel: "noopener", text: e.name || e.id });
    // Paused experts (暂停推荐) stay in a live ranking, flagged: the nightly batch leaves them out.
    const paused = m.paused ? el("div", { class: "badge paused", text: `暂停推荐至 ${m.paused.until}` + (m.paused.reason ? `（${m.paused.reason}）` : "") }) : null;
    const isWeak = m.level === "弱";
    const row = el("tr", isWeak ? { class: "weak" } : {},
      el("td", { class: "num", text: String(m.rank) }),
      el("td", { class: "name" }, link, paused),
      el("td", { text: e.title }),
      el("td", { text: e.institution }),
      el("td", { text: e.region }),
      strengthCell(m.strength, m.level),
    );
    rows.push(row);
    row.append(evidenceCell(m, text, rows));
    if (isWeak) weak++;
    (isWeak ? weakBody : tbody).append(row);
  }
  const more = document.getElementById("show-weak");
  more.hidden = weak === 0;
  more.textContent = `另有 ${weak} 位弱匹配（点击展开）`;
  more.onclick = () => {
    weakBody.hidden = !weakBody.hidden;
    more.textContent = weakBody.hidden ? `另有 ${weak} 位弱匹配（点击展开）` : `收起 ${weak} 位弱匹配`;
  };
  const shown = payload.count - weak;
  document.getElementById("count").textContent = weak ? `（${shown} 位，另有 ${weak} 位弱匹配）` : `（${payload.count} 位）`;
  document.getElementById("results").hidden = payload.count === 0;
  showDemand(text, allTerms(payload.data), "（标黄的是与推荐专家匹配的词）");
}

// What the engine understood: the demand's own terms, then the concepts it added (another
// colour, with the phrase each came from). Each chip has a ×; an input adds a term. Any change
// re-ranks at once.
// In team mode the chips are read only: a team reads the demand as written.
function renderUnderstanding(u, editable = true) {
  const section = document.getElementById("understanding");
  if (!u) {
    section.hidden = true;
    return;
  }
  const chip = (term, cls, title, label) => {
    const node = el("span", { class: "chip " + cls, title, "data-term": term }, el("span", { text: label || term }));
    if (!editable) return node;
    const x = el("button", { type: "button", class: "chip-x", "aria-label": `去掉「${term}」`, text: "×" });
    x.addEventListener("click", () => editTerms({ exclude: term }));
    node.append(x);
    return node;
  };
  const own = document.getElementById("own-terms");
  own.replaceChildren(el("span", { class: "label", text: "需求中的词：" }));
  const content = u.terms.filter((t) => (t.kind || "content") === "content");
  for (const t of content.slice(0, 24)) own.append(chip(t.term, u.extra.includes(t.term.toLowerCase()) ? "own extra" : "own", `权重 ${t.weight.toFixed(2)}`));
  if (!content.length) own.append(el("span", { class: "note", text: "（没有可用的词）" }));
  // Generic words and single characters count little and are never cited as a reason: shown apart.
  const low = document.getElementById("low-terms");
  const lowTerms = u.terms.filter((t) => (t.kind || "content") !== "content");
  low.replaceChildren(el("span", { class: "label", text: "泛用词（权重低）：" }));
  for (const t of lowTerms.slice(0, 16)) low.append(chip(t.term, "low", `泛用词，权重 ${t.weight.toFixed(2)}，不作为匹配理由`));
  low.hidden = lowTerms.length === 0;
  const added = document.getElementById("added-terms");
  added.replaceChildren(el("span", { class: "label", text: "补充的专业概念：" }));
  const sources = { thesaurus: "词表", corpus: "专家语料", learned: "本会对接记录", dense: "语义模型", synonym: "同义词表" };
  for (const e of [...u.expanded, ...(u.synonyms || [])].slice(0, 24)) {
    const support = e.support && e.support.length ? `；佐证：需求里的「${e.support.join("」「")}」` : (e.source === "thesaurus" ? "；词表直接对应" : "");
    // A learned concept says what taught it: the demands and the experts staff judged.
    const ev = e.evidence;
    const why = ev ? `；${ev.judged} 个写有「${e.from}」的需求中 ${ev.demands} 个，被采纳的专家有 ${ev.accepted} 位用此词，不合适或婉拒的 ${ev.declined} 位` : "";
    const label = ev ? `${e.term} ← ${e.from} · ${ev.demands}次对接` : `${e.term} ← ${e.from}`;
    added.append(chip(e.term, "added " + e.source, `由「${e.from}」补充（${sources[e.source] || e.source}，权重 ${e.weight.toFixed(2)}${why}${support}）`, label));
  }
  if (!u.expanded.length && !(u.synonyms || []).length) added.append(el("span", { class: "note", text: "（无）" }));
  document.getElementById("reset-terms").hidden = !editable || !(edits.exclude.length || edits.extra.length);
  section.querySelector(".chips-edit").hidden = !editable;
  document.getElementById("understanding-hint").textContent = editable
    ? "（点 × 去掉不相关的词，或补充一个词，列表随即重排）"
    : "（组团按需求原文理解；要修改词语，请关闭组团推荐）";
  section.hidden = false;
}

function editTerms(change) {
  if (change.exclude && !edits.exclude.includes(change.exclude)) edits.exclude.push(change.exclude);
  if (change.extra) {
    edits.exclude = edits.exclude.filter((t) => t !== change.extra);
    if (!edits.extra.includes(change.extra)) edits.extra.push(change.extra);
  }
  if (change.reset) edits = { text: edits.text, exclude: [], extra: [] };
  document.getElementById("match-form").requestSubmit();
}

function teamMode() {
  return document.getElementById("team-mode").checked;
}

function teamBody() {
  const body = requestBody();
  delete body.top_k;
  delete body.exclude_terms;  // the corrections are the ranked list's; a team reads the demand as written
  delete body.extra_terms;
  body.size = Number(document.getElementById("team-size").value);
  body.one_per_institution = document.getElementById("one-per-institution").checked;
  return body;
}

// The team: a matrix of aspects x members (● where a member covers the aspect, else how close
// the member comes to the aspect's best expert), then each member with the evidence per aspect.
function renderTeam(text, payload) {
  const names = new Map(payload.team.map((m) => [m.expert.id, m.expert.name || m.expert.id]));
  const aspectName = new Map(payload.aspects.map((a) => [a.id, a.name || `方面${a.id}`]));
  const head = document.querySelector("#team-matrix thead tr");
  head.replaceChildren(el("th", { text: "需求方面" }), el("th", { text: "关键词" }));
  for (const m of payload.team) {
    const link = el("a", { href: "/experts/" + encodeURIComponent(m.expert.id), target: "_blank", rel: "noopener", text: names.get(m.expert.id) });
    head.append(el("th", { class: "member" }, link));
  }
  const body = document.querySelector("#team-matrix tbody");
  body.replaceChildren();
  const rows = [];
  payload.aspects.forEach((a, i) => {
    const name = aspectName.get(a.id);
    const row = el("tr", { class: "aspect", "data-aspect": String(a.id), tabindex: "0" },
      el("th", { scope: "row", text: name, title: a.text }),
      el("td", { class: "aspect-terms", text: a.terms.length ? a.terms.join("、") : a.text }));
    for (const m of payload.team) {
      const covered = m.covers.includes(a.id);
      const leads = a.lead === m.expert.id;
      const cell = el("td", { class: covered ? "cell covered" : "cell", text: covered ? (leads ? "★" : "●") : `${Math.round(100 * m.relevance[i])}%` });
      cell.title = covered ? `${names.get(m.expert.id)} ${leads ? "牵头" : "覆盖"}「${name}」` : `${names.get(m.expert.id)} 在「${name}」上是最合适专家的 ${Math.round(100 * m.relevance[i])}%`;
      row.append(cell);
    }
    const pick = () => {
      for (const r of rows) r.classList.remove("selected");
      row.classList.add("selected");
      showDemand(text, a.terms, `（标黄的是「${name}」的关键词）`);
    };
    row.addEventListener("click", pick);
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") pick(); });
    rows.push(row);
    body.append(row);
  });

  const tbody = document.querySelector("#team-table tbody");
  tbody.replaceChildren();
  for (const m of payload.team) {
    const e = m.expert;
    const link = el("a", { href: "/experts/" + encodeURIComponent(e.id), target: "_blank", rel: "noopener", text: e.name || e.id });
    const evidence = el("td", { class: "evidence" });
    for (const part of m.explanation.aspects) {
      const label = m.covers.includes(part.aspect_id) ? aspectName.get(part.aspect_id) : `${aspectName.get(part.aspect_id)}（接近）`;
      const block = el("div", { class: "aspect-evidence" }, el("span", { class: "aspect-label", text: label }));
      for (const ev of part.evidence.slice(0, 2)) {
        const line = el("div", { class: "evidence-item" }, el("span", { class: "field", text: FIELD_NAMES[ev.field] || ev.field }));
        const evTerms = ev.terms.length ? ev.terms : part.terms;
        appendHighlighted(line, excerpt(ev.text, evTerms), evTerms);
        block.append(line);
      }
      evidence.append(block);
    }
    const covers = m.covers.length ? m.covers.map((id) => aspectName.get(id)).join("、") : "—";
    const led = payload.aspects.filter((a) => a.lead === m.expert.id).map((a) => aspectName.get(a.id));
    const coversCell = el("td", { class: "covers", text: covers });
    if (led.length) coversCell.append(el("div", { class: "lead", text: `牵头：${led.join("、")}` }));
    tbody.append(el("tr", {},
      el("td", { class: "num", text: String(m.rank) }),
      el("td", { class: "name" }, link),
      el("td", { text: e.title }),
      el("td", { text: e.institution }),
      el("td", { text: e.region }),
      strengthCell(m.strength, m.level),
      coversCell,
      evidence,
    ));
  }
  const covered = payload.aspects.filter((a) => a.covered_by.length).length;
  document.getElementById("team-summary").textContent = payload.single
    ? `（需求只有一个方面：${payload.team.length} 位专家）`
    : `（需求分为 ${payload.aspects.length} 个方面，${payload.team.length} 位专家覆盖其中 ${covered} 个）`;
  const single = document.getElementById("team-single");
  single.textContent = payload.single
    ? `这条需求只有一个方面（${payload.aspects.length ? aspectName.get(payload.aspects[0].id) : "—"}），团队就是匹配列表的前 ${payload.team.length} 位专家。`
    : "";
  single.hidden = !payload.single;
  const unmatched = document.getElementById("team-unmatched");
  unmatched.textContent = payload.unmatched.length ? `没有专家与这些内容有共同的词：${payload.unmatched.join("；")}` : "";
  unmatched.hidden = payload.unmatched.length === 0;
  document.getElementById("team-results").hidden = payload.team.length === 0;
  document.getElementById("results").hidden = true;
  document.getElementById("show-weak").hidden = true;
  showDemand(text, payload.aspects.flatMap((a) => a.terms), "（标黄的是各方面的关键词）");
}

function showTeamOptions() {
  const on = teamMode();
  for (const node of document.querySelectorAll(".team-only")) node.hidden = !on;
  document.getElementById("top-k-label").hidden = on;
}

function requestBody() {
  const text = document.getElementById("demand").value;
  if (edits.text !== text) edits = { text, exclude: [], extra: [] };  // a new demand: no corrections yet
  return {
    text,
    top_k: Number(document.getElementById("top-k").value),
    filters: {
      region: document.getElementById("region").value.trim(),
      title: document.getElementById("title").value.trim(),
      exclude_institutions: [],
    },
    exclude_terms: [...edits.exclude],
    extra_terms: [...edits.extra],
  };
}

// The server's messages read "中文说明 (english gloss)": staff see the Chinese part. A message with
// no Chinese at all (a proxy's, a framework's) becomes a general one for its status.
const CJK = /[\u3000-\u9fff\uff00-\uffef]/;

function chinese(message) {
  let text = String(message || "").trim();
  if (text.endsWith(")")) {
    const gloss = text.search(/ \((?=[A-Za-z`])/);  // "(第 3 行)" stays; " (the …)" is a gloss
    if (gloss > 0 && CJK.test(text.slice(0, gloss))) text = text.slice(0, gloss).trimEnd();
  }
  return CJK.test(text) ? text : "";
}

const STATUS_MESSAGES = {
  401: "API 密钥无效或已停用。", 403: "没有权限。", 413: "内容太多，超过了服务器允许的大小。",
  422: "输入有误，请检查后重试。", 429: "请求太频繁，请稍后再试。",
};

async function errorMessage(response) {
  try {
    const body = await response.json();
    const said = body && body.error ? chinese(body.error.message) : "";
    if (said) return said;
  } catch (_) { /* not JSON */ }
  return STATUS_MESSAGES[response.status] || `服务器出错了（代码 ${response.status}），请稍后重试。`;
}

async function runMatch(event) {
  event.preventDefault();
  const body = requestBody();
  if (!body.text.trim()) {
    setStatus("请先填写企业需求。", "error");
    return;
  }
  const n = charCount(body.text);
  if (n > textLimit()) {
    setStatus(`需求文字有 ${n.toLocaleString("zh-CN")} 字，超过上限 ${textLimit().toLocaleString("zh-CN")} 字，请删减后再匹配。`, "error");
    return;
  }
  const button = document.getElementById("match-button");
  button.disabled = true;
  const started = performance.now();
  if (teamMode()) {
    await runTeam(teamBody(), button, started);
    return;
  }
  setStatus("正在匹配…", "busy");
  document.getElementById("team-results").hidden = true;
  showSave(null);
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
    renderUnderstanding(payload.understanding);
    renderResults(body.text, payload);
    showSave(body, payload.data.map((m) => m.expert.id));
    document.getElementById("download").disabled = payload.count === 0;
    const ms = Math.round(performance.now() - started);
    setStatus(payload.count ? `找到 ${payload.count} 位专家，用时 ${ms} 毫秒。` : "没有专家与这段需求有共同的词，请换个说法或减少筛选条件。", "done");
  } catch (err) {
    setStatus("无法连接服务器，请检查网络后重试。", "error");
  } finally {
    button.disabled = false;
  }
}

// 保存到收件箱: the demand as matched, with the corrections of what the engine understood and the
// experts listed. The server ranks it again by the same request (what a browser sends is not trusted)
// and keeps the listed order when its ranking still gives every expert listed.
function showSave(body, shown = []) {
  const section = document.getElementById("save");
  section.hidden = !body;
  const form = document.getElementById("save-form");
  if (!body || !form) return;
  const set = (id, value) => { document.getElementById(id).value = value; };
  set("save-text", body.text);
  set("save-top-k", String(body.top_k));
  set("save-region", body.filters.region);
  set("save-title-filter", body.filters.title);
  set("save-exclude", JSON.stringify(body.exclude_terms));
  set("save-extra", JSON.stringify(body.extra_terms));
  set("save-shown", JSON.stringify(shown));
  const first = body.text.split("\n").map((l) => l.trim()).find((l) => l) || "";
  document.getElementById("save-title").placeholder = [...first].length > 30 ? [...first].slice(0, 30).join("") + "…" : first;
  const parts = [];
  if (body.exclude_terms.length) parts.push("排除的词：" + body.exclude_terms.map((t) => `「${t}」`).join("、"));
  if (body.extra_terms.length) parts.push("补充的词：" + body.extra_terms.map((t) => `「${t}」`).join("、"));
  document.getElementById("save-edits").textContent = parts.length ? `将一并保存对系统理解的修改：${parts.join("；")}。` : "";
}

async function runTeam(body, button, started) {
  setStatus("正在组团…", "busy");
  showSave(null);
  document.getElementById("download").disabled = true;  // the Excel download is for the ranked list
  lastRequest = null;
  try {
    const response = await fetch("/api/v1/team", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      setStatus(await errorMessage(response), "error");
      return;
    }
    const payload = await response.json();
    renderUnderstanding(payload.understanding, false);
    renderTeam(body.text, payload);
    const ms = Math.round(performance.now() - started);
    setStatus(payload.team.length ? `组成 ${payload.team.length} 人团队，覆盖 ${Math.round(100 * payload.coverage)}% 的需求方面，用时 ${ms} 毫秒。` : "没有专家与这段需求有共同的词，请换个说法或减少筛选条件。", "done");
  } catch (err) {
    setStatus("无法连接服务器，请检查网络后重试。", "error");
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
  document.getElementById("team-mode").addEventListener("change", showTeamOptions);
  const extra = document.getElementById("extra-term");
  const addTerm = () => {
    const term = extra.value.trim();
    if (!term) return;
    extra.value = "";
    editTerms({ extra: term });
  };
  document.getElementById("add-term").addEventListener("click", addTerm);
  extra.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); addTerm(); } });
  document.getElementById("reset-terms").addEventListener("click", () => editTerms({ reset: true }));
  document.getElementById("demand-unfold").addEventListener("click", toggleFold);
  document.getElementById("demand").addEventListener("input", showCount);
  showCount();
  showTeamOptions();
  document.getElementById("demand").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) document.getElementById("match-form").requestSubmit();
  });
});
