// The review page of a labeling run (written by labeling/report.py). Plain JavaScript, no
// network: the run's data arrives through data.js (reportRun) and each episode's through
// episodes/<episode>.js (reportEpisode), loaded when the episode is opened.
"use strict";

const SCORE_COLORS = ["#c0392b", "#e67e22", "#d4ac0d", "#7cb342", "#2e7d32"];
const VERDICTS = ["success", "failure", "unknown", "not labeled"];
const state = {
  run: null,
  rows: [],
  sort: {key: "confidence", ascending: true},  // doubtful episodes first
  filter: {verdict: "all", task: "all", final: 5},
  details: {},  // episode -> its detail, once loaded
  current: null,
  frame: 0,
  corrections: noCorrections(),
};

function noCorrections() {
  return {keyframes: {}, verdicts: {}, dropped: {}};  // episode -> {frame: score} / success / true
}

const $ = (selector) => document.querySelector(selector);
const escape = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fixed = (value, digits = 2) => (value === null || value === undefined ? "–" : value.toFixed(digits));

function reportRun(data) {
  state.run = data;
  state.rows = data.episodes;
  renderHeader();
  renderGlance();
  renderFilters();
  state.corrections = storedCorrections();
  correctionsChanged();
  document.querySelectorAll("#episodes th").forEach((th) => th.addEventListener("click", () => sortBy(th.dataset.key)));
  $("#episodes tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (row) openEpisode(Number(row.dataset.episode));
  });
  $("#export").addEventListener("click", exportCorrections);
  $("#clear").addEventListener("click", () => {
    state.corrections = noCorrections();
    correctionsChanged();
  });
  document.addEventListener("keydown", (event) => {
    if (state.current === null || event.target.tagName === "SELECT") return;
    if (event.key === "ArrowRight") setFrame(state.frame + 1);
    if (event.key === "ArrowLeft") setFrame(state.frame - 1);
  });
}

function renderHeader() {
  const run = state.run.run;
  document.title = `Review: ${run.name}`;
  $("#title").textContent = `Review of ${run.name}`;
  $("#subtitle").innerHTML = [
    `dataset <b>${escape(run.dataset)}</b>`, `model <b>${escape(run.model)}</b> (${escape(run.backend)})`,
    `stages ${escape(run.stages.join(", "))}`, `finished ${escape((run.finished || "").slice(0, 19).replace("T", " "))}`,
  ].join(" · ");
}

function renderGlance() {
  const {run, histograms} = state.run;
  const summary = run.summary;
  const count = (verdict) => state.rows.filter((row) => row.verdict === verdict).length;
  const calls = Object.entries(summary.calls_by_stage || {})
    .map(([stage, n]) => `<tr><td>${escape(stage)}</td><td>${n}</td></tr>`).join("");
  const skipped = Object.entries(summary.skipped || {})
    .map(([episode, reason]) => `<li>episode ${escape(episode)}: ${escape(reason)}</li>`).join("");
  const missing = Object.entries(summary.missing_by_reason || {})
    .map(([reason, n]) => `<li>${n}× ${escape(reason)}</li>`).join("");
  const verdicts = run.outcomes
    ? `<b class="success">${count("success")}</b> success · <b class="failure">${count("failure")}</b> failure`
    : `<span class="muted">unknown (this output has no labels/episodes.parquet)</span>`;
  $("#glance").innerHTML = `
    <div class="card"><h3>Episodes</h3><p class="big">${state.rows.length}</p>
      <p>${summary.episodes ?? 0} labeled · ${summary.episodes_skipped ?? 0} skipped</p><p>${verdicts}</p></div>
    <div class="card"><h3>Final score</h3>${histogram(histograms.final)}</div>
    <div class="card"><h3>Every labeled frame</h3>${histogram(histograms.frames)}</div>
    <div class="card"><h3>Calls</h3><table class="small"><tr><th>stage</th><th>model calls</th></tr>${calls}</table>
      <p>${summary.cached_calls ?? 0} from cache · ${summary.retries ?? 0} retries · ${summary.failed_calls ?? 0} failed</p>
      <p>${(summary.prompt_tokens ?? 0).toLocaleString()} prompt tokens (${(summary.image_tokens ?? 0).toLocaleString()} image)
       · ${fixed(summary.elapsed_s, 1)} s</p></div>
    <div class="card"><h3>Skipped and missing</h3>
      ${skipped ? `<ul>${skipped}</ul>` : "<p>no episode skipped</p>"}
      ${missing ? `<p>missing answers:</p><ul>${missing}</ul>` : "<p>no missing answer</p>"}</div>`;
}

function histogram(counts) {
  const top = Math.max(1, ...counts);
  const bars = counts.map((n, i) => {
    const height = Math.round(58 * n / top);
    return `<g><rect x="${i * 34 + 4}" y="${76 - height}" width="28" height="${height}" rx="2" fill="${SCORE_COLORS[i]}"></rect>
      <text x="${i * 34 + 18}" y="${72 - height}" class="count">${n}</text>
      <text x="${i * 34 + 18}" y="90" class="axis">${i + 1}</text></g>`;
  }).join("");
  return `<svg class="histogram" viewBox="0 0 174 94" role="img">${bars}</svg>`;
}

function renderFilters() {
  const options = (values, chosen) => values.map((v) => `<option value="${escape(v)}"${v === chosen ? " selected" : ""}>${escape(v)}</option>`).join("");
  const tasks = [...new Set(state.rows.map((row) => row.task))].sort();
  $("#filter-verdict").innerHTML = options(["all", ...VERDICTS], "all");
  $("#filter-task").innerHTML = options(["all", ...tasks], "all");
  $("#filter-final").innerHTML = options(["5", "4", "3", "2", "1"], "5");
  for (const [id, key] of [["#filter-verdict", "verdict"], ["#filter-task", "task"], ["#filter-final", "final"]]) {
    $(id).addEventListener("change", (event) => {
      state.filter[key] = key === "final" ? Number(event.target.value) : event.target.value;
      renderTable();
    });
  }
}

function sortBy(key) {
  state.sort = {key, ascending: state.sort.key === key ? !state.sort.ascending : true};
  renderTable();
}

function compare(a, b) {
  const {key, ascending} = state.sort;
  const unlabeled = (row) => row.verdict === "not labeled";
  if (unlabeled(a) !== unlabeled(b)) return unlabeled(a) ? 1 : -1;  // nothing to review: always last
  const x = a[key], y = b[key];
  // Unknown values (no confidence, not labeled) are the most doubtful: first when ascending.
  const order = x === y ? a.episode - b.episode : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1;
  return ascending ? order : -order;
}

function shownRows() {
  const {verdict, task, final} = state.filter;
  return state.rows.filter((row) =>
    (verdict === "all" || row.verdict === verdict) && (task === "all" || row.task === task)
    && (final >= 5 || (row.final_expected !== null && row.final_expected <= final))).sort(compare);
}

function verdictOf(row) {
  const corrected = state.corrections.verdicts[row.episode];
  if (state.corrections.dropped[row.episode]) return "dropped";
  if (corrected !== undefined) return corrected ? "success" : "failure";
  return row.verdict;
}

function renderTable() {
  const rows = shownRows();
  $("#episodes tbody").innerHTML = rows.map((row) => {
    const edited = hasCorrections(row.episode) || row.corrected;
    return `<tr data-episode="${row.episode}" class="${row.episode === state.current ? "selected" : ""}">
      <td>${row.episode}${edited ? ' <span class="edited" title="corrected">✎</span>' : ""}</td>
      <td><span class="chip ${verdictOf(row).replace(" ", "-")}">${escape(verdictOf(row))}</span></td>
      <td>${row.final_expected === null ? "–" : scoreBadge(row.final_score, fixed(row.final_expected))}</td>
      <td>${confidenceBar(row.confidence)}</td>
      <td class="task" title="${escape(row.task)}">${escape(row.task)}</td>
      <td>${row.length}</td></tr>`;
  }).join("");
  document.querySelectorAll("#episodes th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.key === state.sort.key);
    th.dataset.direction = state.sort.ascending ? "▲" : "▼";
  });
  $("#shown").textContent = `${rows.length} of ${state.rows.length} episodes`;
}

function scoreBadge(score, text) {
  return `<span class="score" style="background:${SCORE_COLORS[(score || 1) - 1]}">${escape(text)}</span>`;
}

function confidenceBar(confidence) {
  if (confidence === null) return '<span class="muted">–</span>';
  return `<span class="bar"><span style="width:${Math.round(confidence * 100)}%"></span></span> ${fixed(confidence)}`;
}

function openEpisode(episode) {
  state.current = episode;
  state.frame = 0;
  renderTable();
  if (state.details[episode]) return renderDetail();
  $("#detail").innerHTML = '<p class="hint">loading…</p>';
  const script = document.createElement("script");
  script.src = `episodes/${String(episode).padStart(6, "0")}.js`;
  script.onerror = () => { $("#detail").innerHTML = `<p class="hint">cannot load ${escape(script.src)}</p>`; };
  document.body.appendChild(script);
}

function reportEpisode(detail) {
  state.details[detail.episode] = detail;
  if (detail.episode === state.current) renderDetail();
}

function renderDetail() {
  const detail = state.details[state.current];
  const rewrite = detail.task_rewrite[0];
  const paraphrases = rewrite && rewrite.paraphrases && rewrite.paraphrases.length
    ? `<p>paraphrases: ${rewrite.paraphrases.map((p) => `<q>${escape(p)}</q>`).join(" ")}</p>` : "";
  const rewriteNote = rewrite && rewrite.reason ? ` <span class="muted">(${escape(rewrite.reason)})</span>` : "";
  $("#detail").innerHTML = `
    <div class="detail-head">
      <h2>Episode ${detail.episode} <span class="chip ${verdictOf(detail).replace(" ", "-")}" id="detail-verdict">${escape(verdictOf(detail))}</span></h2>
      <div class="verdict-controls">
        <span>mark as</span>
        <button type="button" data-verdict="success">success</button>
        <button type="button" data-verdict="failure">failure</button>
        <button type="button" data-verdict="drop" class="danger">drop episode</button>
      </div>
    </div>
    ${detail.skipped ? `<p class="warning">skipped: ${escape(detail.skipped)}</p>` : ""}
    <p class="instruction"><b>${escape(rewrite ? rewrite.instruction : detail.task)}</b>${rewriteNote}</p>
    ${rewrite && rewrite.instruction !== detail.task ? `<p class="muted">original task: ${escape(detail.task)}</p>` : ""}
    ${paraphrases}
    <div id="curve"></div>
    <div id="scrub"><input id="frame-slider" type="range" min="0" max="${detail.length - 1}" value="0">
      <span id="frame-label"></span></div>
    <div id="cameras"></div>
    <h3>Keyframes <span class="muted">the clips the model saw, and its answer; click a score to correct it</span></h3>
    <div id="keyframes"></div>
    ${section("Validation verdicts", detail.verdicts, ["target", "frame", "proposed_score", "consistent", "model_score", "action", "reason"])}
    ${section("Negatives", detail.negatives, ["origin", "instruction", "start", "end", "score", "status", "final_score"])}
    ${rawAnswers(detail.raw_answers)}`;
  document.querySelectorAll(".verdict-controls button").forEach((button) =>
    button.addEventListener("click", () => setVerdict(detail.episode, button.dataset.verdict)));
  $("#frame-slider").addEventListener("input", (event) => setFrame(Number(event.target.value)));
  renderCurve(detail);
  renderCameras(detail);
  renderKeyframes(detail);
  markVerdictButtons(detail.episode);
  setFrame(state.frame);
}

function section(title, rows, columns) {
  if (!rows.length) return `<h3>${title}</h3><p class="muted">none</p>`;
  const head = columns.map((c) => `<th>${escape(c.replace("_", " "))}</th>`).join("");
  const body = rows.map((row) => `<tr>${columns.map((c) => `<td>${escape(row[c])}</td>`).join("")}</tr>`).join("");
  return `<h3>${title}</h3><table class="small records"><tr>${head}</tr>${body}</table>`;
}

function rawAnswers(answers) {
  if (!answers.length) return '<h3>Raw answers</h3><p class="muted">no answer cache next to this output</p>';
  const items = answers.map((answer) => {
    const probs = answer.probs ? Object.entries(answer.probs).map(([k, p]) => `${k}: ${p.toFixed(3)}`).join("  ") : "";
    return `<li><b>${escape(answer.stage)}</b> <code>${escape(answer.text ?? "")}${answer.text && probs ? " · " : ""}${escape(probs)}</code></li>`;
  }).join("");
  return `<details class="raw"><summary>Raw answers (${answers.length}, from the answer cache)</summary><ul>${items}</ul></details>`;
}

// --- the reward curve --------------------------------------------------------------------------

const CURVE = {width: 640, height: 210, left: 34, right: 12, top: 12, bottom: 26};

function curveX(frame, length) {
  return CURVE.left + (CURVE.width - CURVE.left - CURVE.right) * frame / Math.max(1, length - 1);
}

function curveY(score) {
  return CURVE.top + (CURVE.height - CURVE.top - CURVE.bottom) * (5 - score) / 4;
}

function renderCurve(detail) {
  const n = detail.length;
  const grid = [1, 2, 3, 4, 5].map((s) => `<line x1="${CURVE.left}" x2="${CURVE.width - CURVE.right}" y1="${curveY(s)}" y2="${curveY(s)}" class="grid"></line>
    <text x="${CURVE.left - 8}" y="${curveY(s) + 4}" class="axis">${s}</text>`).join("");
  const ticks = [0, Math.round((n - 1) / 2), n - 1].map((f) =>
    `<text x="${curveX(f, n)}" y="${CURVE.height - 8}" class="axis">${f}</text>`).join("");
  const path = (values) => values.map((v, f) => (v === null ? "" : `${f === 0 ? "M" : "L"}${curveX(f, n).toFixed(1)},${curveY(v).toFixed(1)}`)).join(" ");
  const points = detail.keyframes.filter((k) => k.expected !== null).map((k) =>
    `<circle cx="${curveX(k.frame, n)}" cy="${curveY(k.expected)}" r="5" class="keyframe ${k.source}" data-frame="${k.frame}"></circle>`).join("");
  const corrected = Object.entries(state.corrections.keyframes[detail.episode] || {}).map(([frame, score]) =>
    `<circle cx="${curveX(Number(frame), n)}" cy="${curveY(score)}" r="6" class="keyframe review"></circle>`).join("");
  $("#curve").innerHTML = `<svg viewBox="0 0 ${CURVE.width} ${CURVE.height}" id="curve-svg" role="img" aria-label="reward curve">
    ${grid}${ticks}
    <path d="${path(detail.score)}" class="label-line"></path>
    <path d="${path(detail.expected)}" class="expected-line"></path>
    ${points}${corrected}
    <line id="cursor" y1="${CURVE.top}" y2="${CURVE.height - CURVE.bottom}"></line>
    </svg><div id="tooltip" hidden></div>
    <p class="legend"><span class="swatch expected"></span>expected score <span class="swatch label"></span>label
      <span class="dot model"></span>keyframe <span class="dot validator"></span>relabelled by validation <span class="dot review"></span>reviewer</p>`;
  const svg = $("#curve-svg");
  const frameAt = (event) => {
    const box = svg.getBoundingClientRect();
    const x = (event.clientX - box.left) * CURVE.width / box.width;
    return Math.round((x - CURVE.left) / (CURVE.width - CURVE.left - CURVE.right) * (n - 1));
  };
  svg.addEventListener("click", (event) => setFrame(frameAt(event)));
  svg.addEventListener("mousemove", (event) => { if (event.buttons === 1) setFrame(frameAt(event)); });
  svg.querySelectorAll("circle[data-frame]").forEach((circle) => {
    const keyframe = detail.keyframes.find((k) => k.frame === Number(circle.dataset.frame));
    circle.addEventListener("mouseenter", () => showTooltip(circle, keyframe));
    circle.addEventListener("mouseleave", () => { $("#tooltip").hidden = true; });
  });
}

function distribution(probs) {
  if (!probs) return '<span class="muted">parsed from text: no distribution</span>';
  return `<span class="distribution">${probs.map((p, i) =>
    `<span title="${i + 1}: ${p.toFixed(3)}"><i style="height:${Math.round(p * 100)}%;background:${SCORE_COLORS[i]}"></i><b>${i + 1}</b></span>`).join("")}</span>`;
}

function showTooltip(circle, keyframe) {
  const tooltip = $("#tooltip");
  const box = circle.getBoundingClientRect();
  const parent = $("#curve").getBoundingClientRect();
  tooltip.innerHTML = `<b>frame ${keyframe.frame}</b> · answer ${keyframe.score ?? "missing"} · expected ${fixed(keyframe.expected)}
    ${keyframe.source !== "model" ? `<br>${escape(keyframe.source)}` : ""}${keyframe.reason ? `<br>${escape(keyframe.reason)}` : ""}
    <div>${distribution(keyframe.probs)}</div>`;
  tooltip.hidden = false;
  tooltip.style.left = `${Math.min(box.left - parent.left + 10, parent.width - 200)}px`;
  tooltip.style.top = `${box.top - parent.top + 12}px`;
}

// --- frames ------------------------------------------------------------------------------------

function nearestPosition(frames, frame) {
  let best = 0;
  frames.forEach((f, i) => { if (Math.abs(f - frame) < Math.abs(frames[best] - frame)) best = i; });
  return best;
}

function frameCell(strip, frame, height) {
  const scale = height / strip.height;
  const position = nearestPosition(strip.frames, frame);
  return `width:${Math.round(strip.width * scale)}px;height:${height}px;background-image:url('${strip.file}');`
    + `background-size:${Math.round(strip.frames.length * strip.width * scale)}px ${height}px;`
    + `background-position:-${Math.round(position * strip.width * scale)}px 0`;
}

function renderCameras(detail) {
  $("#cameras").innerHTML = Object.entries(detail.strips).map(([camera]) =>
    `<figure><div class="frame" data-camera="${escape(camera)}"></div><figcaption>${escape(camera)} <span class="shown-frame"></span></figcaption></figure>`).join("");
}

function setFrame(frame) {
  const detail = state.details[state.current];
  if (!detail) return;
  state.frame = Math.max(0, Math.min(detail.length - 1, frame));
  const cursor = $("#cursor");
  cursor.setAttribute("x1", curveX(state.frame, detail.length));
  cursor.setAttribute("x2", curveX(state.frame, detail.length));
  $("#frame-slider").value = state.frame;
  const expected = detail.expected[state.frame];
  $("#frame-label").innerHTML = `frame ${state.frame} / ${detail.length - 1}`
    + (expected === null || expected === undefined ? "" : ` · label ${detail.score[state.frame]} · expected ${fixed(expected)}`);
  document.querySelectorAll("#cameras .frame").forEach((div) => {
    const strip = detail.strips[div.dataset.camera];
    div.style.cssText = frameCell(strip, state.frame, 192);
    div.parentElement.querySelector(".shown-frame").textContent = `frame ${strip.frames[nearestPosition(strip.frames, state.frame)]}`;
  });
}

// --- keyframes and corrections -----------------------------------------------------------------

function renderKeyframes(detail) {
  const strips = Object.values(detail.strips);
  const corrected = state.corrections.keyframes[detail.episode] || {};
  $("#keyframes").innerHTML = detail.keyframes.map((k) => {
    const clip = k.context.map((f) => `<span class="clip-frame" title="frame ${f}">${strips.map((strip) =>
      `<i style="${frameCell(strip, f, 44)}"></i>`).join("")}</span>`).join("");
    const chosen = corrected[k.frame] ?? k.score;
    const buttons = [1, 2, 3, 4, 5].map((s) => `<button type="button" class="score-button${s === chosen ? " chosen" : ""}${corrected[k.frame] === s ? " corrected" : ""}"
      data-frame="${k.frame}" data-score="${s}" style="--score:${SCORE_COLORS[s - 1]}">${s}</button>`).join("");
    return `<div class="keyframe-row" data-frame="${k.frame}">
      <div class="keyframe-meta"><a href="#" data-goto="${k.frame}">frame ${k.frame}</a>
        <span>${k.score === null ? `<span class="warning">missing: ${escape(k.reason)}</span>` : `answer ${k.score} · expected ${fixed(k.expected)}`}</span>
        ${k.source !== "model" ? `<span class="muted">${escape(k.source)}</span>` : ""}
        ${distribution(k.probs)}
        <div class="scores">${buttons}</div></div>
      <div class="clip">${clip}</div></div>`;
  }).join("");
  document.querySelectorAll("#keyframes .score-button").forEach((button) => button.addEventListener("click", () =>
    setKeyframeScore(detail, Number(button.dataset.frame), Number(button.dataset.score))));
  document.querySelectorAll("#keyframes a[data-goto]").forEach((a) => a.addEventListener("click", (event) => {
    event.preventDefault();
    setFrame(Number(a.dataset.goto));
  }));
}

function setKeyframeScore(detail, frame, score) {
  const episode = detail.episode;
  const keyframe = detail.keyframes.find((k) => k.frame === frame);
  const corrected = state.corrections.keyframes[episode] || {};
  if (score === keyframe.score || corrected[frame] === score) delete corrected[frame];  // back to the model's
  else corrected[frame] = score;
  state.corrections.keyframes[episode] = corrected;
  correctionsChanged();
}

function setVerdict(episode, verdict) {
  const {verdicts, dropped} = state.corrections;
  if (verdict === "drop") {
    if (dropped[episode]) delete dropped[episode]; else dropped[episode] = true;
  } else {
    const success = verdict === "success";
    if (verdicts[episode] === success) delete verdicts[episode]; else verdicts[episode] = success;
  }
  correctionsChanged();
}

function markVerdictButtons(episode) {
  const {verdicts, dropped} = state.corrections;
  document.querySelectorAll(".verdict-controls button").forEach((button) => {
    const v = button.dataset.verdict;
    button.classList.toggle("chosen", v === "drop" ? Boolean(dropped[episode]) : verdicts[episode] === (v === "success"));
  });
}

function hasCorrections(episode) {
  const {keyframes, verdicts, dropped} = state.corrections;
  return Object.keys(keyframes[episode] || {}).length > 0 || episode in verdicts || episode in dropped;
}

function correctionList() {
  const {keyframes, verdicts, dropped} = state.corrections;
  return {
    keyframes: Object.entries(keyframes).flatMap(([episode, frames]) => Object.entries(frames).map(([frame, score]) =>
      ({episode: Number(episode), frame: Number(frame), score}))),
    verdicts: Object.entries(verdicts).map(([episode, success]) => ({episode: Number(episode), success})),
    dropped: Object.keys(dropped).map(Number),
  };
}

// Corrections in progress outlive a reload: kept in the browser per run, and per round of
// corrections already applied to it.
function storageKey() {
  const run = state.run.run;
  return `labeling-review:${run.dataset}:${run.name}:${run.started}:${run.corrections ? run.corrections.applied : ""}`;
}

function storedCorrections() {
  try {
    return JSON.parse(localStorage.getItem(storageKey())) || noCorrections();
  } catch (error) {
    return noCorrections();  // storage unavailable or unreadable: start afresh
  }
}

function correctionsChanged() {
  try {
    localStorage.setItem(storageKey(), JSON.stringify(state.corrections));
  } catch (error) {
    // storage unavailable: the corrections last until the page closes
  }
  const list = correctionList();
  const total = list.keyframes.length + list.verdicts.length + list.dropped.length;
  $("#corrections-count").textContent = total ? `${total} correction${total > 1 ? "s" : ""}: ${list.keyframes.length} keyframe score(s), `
    + `${list.verdicts.length} verdict(s), ${list.dropped.length} dropped` : "no corrections";
  $("#export").disabled = $("#clear").disabled = !total;
  renderTable();
  if (state.current !== null && state.details[state.current]) {
    const frame = state.frame;
    renderDetail();
    setFrame(frame);
  }
}

function exportCorrections() {
  const payload = {format: "labeling-corrections/1", dataset: state.run.run.dataset, output: state.run.run.name,
                   created: new Date().toISOString(), ...correctionList()};
  const blob = new Blob([JSON.stringify(payload, null, 2)], {type: "application/json"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "corrections.json";
  document.body.appendChild(link);
  link.click();
  link.remove();
}
