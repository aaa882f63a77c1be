// BrokeForge: live progress over Server-Sent Events, copy buttons, and forms that queue jobs without a reload.
(function () {
  "use strict";
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Forms that ask first (`data-confirm`): no inline handlers, so names in the question are only ever text.
  document.addEventListener("submit", function (e) {
    const q = e.target.dataset && e.target.dataset.confirm;
    if (q && !window.confirm(q)) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);

  document.querySelectorAll("[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      const text = document.getElementById(b.dataset.copy).textContent;
      navigator.clipboard.writeText(text).then(function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); });
    });
  });

  function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }

  // A job's box: progress bar and milestone list (from the catalogue when the page knows them).
  function jobBox(jobId, label, milestones) {
    let box = document.querySelector('.job[data-job="' + jobId + '"]');
    if (box) return box;
    const list = document.getElementById("jobs-live");
    if (!list) return null;
    box = el("div", "job"); box.dataset.job = jobId;
    const head = el("div", "head");
    head.append(el("strong", null, label || ("Job " + jobId)), el("span", "spacer"), el("span", "badge running", "running"));
    box.append(head, el("progress"), el("ol", "milestones"), el("div", "err"), el("pre", "log"));
    box.querySelector("pre.log").hidden = true;
    (milestones || []).forEach(function (m) { const li = el("li", "pending", m.label); li.dataset.key = m.key; box.querySelector("ol").append(li); });
    list.prepend(box);
    const none = document.getElementById("no-jobs"); if (none) none.remove();
    box.scrollIntoView({ block: "center", behavior: "smooth" });
    return box;
  }

  function onMilestone(ev) {
    const e = JSON.parse(ev.data);
    // Steps the one-line script reports belong to no job: they share box 0.
    const jobId = e.job_id == null ? 0 : e.job_id;
    const box = jobBox(jobId, jobId === 0 ? "Provisioning script" : null, null);
    if (!box) return;
    const bar = box.querySelector("progress");
    bar.max = e.total_steps;
    const done = e.status === "completed" ? e.current_step : e.current_step - 1;
    if (done > (bar.value || 0) || e.status === "completed") bar.value = Math.max(bar.value || 0, done);
    let li = box.querySelector('li[data-key="' + e.milestone + '"]');
    if (!li) { li = el("li", "", e.label); li.dataset.key = e.milestone; box.querySelector("ol").append(li); }
    li.className = e.status;
    li.title = e.error || "";
    if (e.error) box.querySelector(".err").textContent = e.label + ": " + e.error;
  }

  function onOutput(ev) {
    const o = JSON.parse(ev.data);
    const box = o.job_id != null && document.querySelector('.job[data-job="' + o.job_id + '"]');
    // A page's own log panel for this job wins over the box's.
    const target = document.querySelector('pre[data-job-log="' + o.job_id + '"]') || (box && box.querySelector("pre.log"));
    if (!target) return;
    target.hidden = false;
    target.append(document.createTextNode(o.chunk));
    target.scrollTop = target.scrollHeight;
  }

  function onJob(ev) {
    const j = JSON.parse(ev.data);
    const box = document.querySelector('.job[data-job="' + j.job_id + '"]');
    if (box) {
      const badge = box.querySelector(".badge");
      badge.className = "badge " + j.status; badge.textContent = j.status;
      box.classList.add("finished");
      if (j.status === "done") { const bar = box.querySelector("progress"); bar.value = bar.max || 1; }
      if (j.error && !box.querySelector(".err").textContent) box.querySelector(".err").textContent = j.error;
      box.querySelectorAll("[data-cancel]").forEach(function (b) { b.remove(); });
      if (j.status === "failed" || j.status === "cancelled") addRetry(box, j.job_id);
    }
    document.querySelectorAll('[data-job-status="' + j.job_id + '"]').forEach(function (s) { s.className = "badge " + j.status; s.textContent = j.status; });
    // A service's row follows its job: installed, removed or failed.
    const services = document.getElementById("services");
    if (services && j.target && j.target.type === "service") {
      let row = services.querySelector('tr[data-service="' + j.target.name + '"]');
      const removed = j.target.provision_type === "uninstall" && j.status === "done";
      if (removed) { if (row) row.remove(); }
      else {
        if (!row) {
          row = el("tr"); row.dataset.service = j.target.name;
          const name = el("td"); name.append(el("strong", null, j.target.name));
          row.append(name, el("td"), el("td")); services.append(row);
          const none = document.getElementById("no-services"); if (none) none.remove();
        }
        const status = j.status === "done" ? "active" : "failed";
        row.children[1].replaceChildren(el("span", "badge " + status, status));
      }
    }
    document.dispatchEvent(new CustomEvent("bf:job", { detail: j }));
  }

  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: body ? JSON.stringify(body) : "" })
      .then(function (r) { return r.json().then(function (d) { return { ok: r.ok, data: d }; }); });
  }

  function addRetry(box, jobId) {
    if (box.querySelector("[data-retry]")) return;
    const b = el("button", "secondary", "Retry"); b.dataset.retry = jobId;
    b.addEventListener("click", function () {
      b.disabled = true;
      post("/api/v1/jobs/" + jobId + "/retry").then(function (r) {
        if (!r.ok) { box.querySelector(".err").textContent = r.data.error.message; b.disabled = false; return; }
        const fresh = jobBox(r.data.job.id, box.querySelector("strong").textContent, Array.from(box.querySelectorAll("li")).map(function (li) { return { key: li.dataset.key, label: li.textContent }; }));
        if (fresh) b.remove();
      });
    });
    box.querySelector(".head").append(b);
  }

  document.addEventListener("click", function (e) {
    const c = e.target.closest("[data-cancel]");
    if (c) { e.preventDefault(); c.disabled = true; post("/api/v1/jobs/" + c.dataset.cancel + "/cancel"); }
    const r = e.target.closest(".job [data-retry-initial]");
    if (r) { e.preventDefault(); r.remove(); addRetry(r.closest(".job"), r.dataset.retryInitial); r.closest(".job").querySelector("[data-retry]").click(); }
  });

  // Forms marked data-api post JSON to the API and show the job live instead of reloading.
  document.querySelectorAll("form[data-api]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      e.preventDefault();
      const data = {}; const settings = {};
      new FormData(f).forEach(function (v, k) {
        if (k === "_csrf") return;
        if (k.indexOf("set.") === 0) { if (v !== "") settings[k.slice(4)] = v; } else data[k] = v;
      });
      f.querySelectorAll('input[type=checkbox][name^="set."]').forEach(function (c) { settings[c.name.slice(4)] = c.checked ? "true" : "false"; });
      if (Object.keys(settings).length || f.dataset.settings !== undefined) data.settings = settings;
      const err = f.querySelector(".error") || f.appendChild(el("div", "error"));
      err.hidden = true;
      const button = f.querySelector("button"); if (button) button.disabled = true;
      post(f.dataset.api, data).then(function (r) {
        if (button) button.disabled = false;
        if (!r.ok) { err.hidden = false; err.textContent = r.data.error.message; return; }
        const job = r.data.job;
        if (job) jobBox(job.id, f.dataset.label || job.kind, JSON.parse(f.dataset.milestones || "[]"));
        if (f.dataset.then === "reload") location.reload();
      });
    });
  });

  // The live stream: the page says where it was rendered (data-stream + data-cursor).
  const live = document.querySelector("[data-stream]");
  if (live && window.EventSource) {
    const url = live.dataset.stream + (live.dataset.stream.indexOf("?") < 0 ? "?" : "&") + "after=" + (live.dataset.cursor || 0);
    const es = new EventSource(url); // reconnects by itself, sending Last-Event-ID
    es.addEventListener("milestone", onMilestone);
    es.addEventListener("output", onOutput);
    es.addEventListener("job", onJob);
    window.bfStream = es;
  }
})();

// The logs page: "Follow live" streams the API's plain-text answer into the page until the user stops it.
(function () {
  const form = document.getElementById("log-form");
  if (!form) return;
  const out = document.getElementById("log-output");
  const follow = form.querySelector("[data-follow-logs]");
  const download = form.querySelector("[data-download-logs]");
  let stop = null;
  function query(extra) {
    const p = new URLSearchParams(new FormData(form));
    if (p.get("kind") !== "unit") p.delete("unit");
    Object.keys(extra).forEach(function (k) { p.set(k, extra[k]); });
    return form.dataset.logsApi + "?" + p.toString();
  }
  download.addEventListener("click", function () { window.location = query({ download: "true" }); });
  follow.addEventListener("click", function () {
    if (stop) { stop.abort(); return; }
    stop = new AbortController();
    follow.textContent = "Stop following";
    out.textContent = "";
    fetch(query({ follow: "true" }), { signal: stop.signal, credentials: "same-origin" }).then(function (r) {
      if (!r.ok) return r.json().then(function (j) { out.textContent = "error: " + ((j.error && j.error.message) || r.status); });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      function pump() {
        return reader.read().then(function (c) {
          if (c.done) return;
          const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
          out.textContent += dec.decode(c.value, { stream: true });
          if (atEnd) out.scrollTop = out.scrollHeight;
          return pump();
        });
      }
      return pump();
    }).catch(function () {}).finally(function () { stop = null; follow.textContent = "Follow live"; });
  });
})();

// A recipe run's page follows the run: its grid is read from the API every second until nothing moves.
(function () {
  const box = document.querySelector("[data-recipe-run]");
  if (!box) return;
  const first = box.querySelector("[data-run-status]").textContent;
  function set(el, text, badge) {
    if (!el) return;
    el.textContent = text;
    if (badge) el.className = "badge " + text;
  }
  function tick() {
    fetch("/api/v1/recipe-runs/" + box.dataset.recipeRun, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (v) {
      if (!v) return;
      set(box.querySelector("[data-run-status]"), v.run.status, true);
      set(box.querySelector("[data-run-summary]"), Object.keys(v.summary).map(function (k) { return v.summary[k] + " " + k; }).join(", "));
      let busy = false;
      v.servers.forEach(function (s) {
        const row = box.querySelector('tr[data-run-server="' + s.server_id + '"]');
        if (!row) return;
        set(row.querySelector('[data-cell="state"]'), s.shown_state, true);
        set(row.querySelector('[data-cell="exit"]'), s.exit_code == null ? "" : String(s.exit_code));
        set(row.querySelector('[data-cell="took"]'), s.duration_ms == null ? "" : s.duration_ms + " ms");
        const job = row.querySelector('[data-cell="job"]');
        if (job && s.job_id != null && !job.querySelector("a")) {
          const a = document.createElement("a");
          a.href = "/jobs/" + s.job_id;
          a.textContent = "job " + s.job_id;
          job.appendChild(a);
        }
        if (s.state === "queued" || s.state === "running") busy = true;
      });
      // A run that stopped gets its resume button from the server.
      if (v.run.status === "stopped" && first !== "stopped" && !busy) { location.reload(); return; }
      if (v.run.status === "running" || busy) setTimeout(tick, 1000);
    }).catch(function () { setTimeout(tick, 3000); });
  }
  if (first === "running" || box.querySelector('[data-cell="state"].queued, [data-cell="state"].running')) setTimeout(tick, 1000);
})();
