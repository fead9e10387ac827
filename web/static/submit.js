// The submit page: choose files, hash them here (MD5 + PDQ, vPDQ frames for videos), show
// exactly what will be sent, send it over gRPC-Web, show the case id and PIN once. Files,
// previews and names never leave the page; only the review table's hashes are sent.
import { setupPage, t } from './i18n.js';
import { MIN_TRUSTED_QUALITY } from './pdq.js';
import { videoFrames } from './video.js';
import { submitCase } from './grpcweb.js';
import { errorMessage, hex, humanSize } from './common.js';

const MAX_FILE_BYTES = 2 * 1024 ** 3;
const MAX_DECODE_BYTES = 64 * 1024 ** 2;
const $ = (id) => document.getElementById(id);
const items = [];
const queue = [];
let running = false, batch = null, nextId = 0;

function note(item, key, params = {}, error = false) {
  item.note = { key, params, error };
  render(item);
}

function render(item) {
  const { li } = item;
  li.querySelector('.note').textContent = item.note ? t(item.note.key, item.note.params) : '';
  li.querySelector('.note').classList.toggle('error', Boolean(item.note?.error));
  const bar = li.querySelector('progress');
  bar.value = item.progress;
  bar.setAttribute('aria-label', t('progressOf', { name: item.name }));
  li.querySelector('button').setAttribute('aria-label', t('remove', { name: item.name }));
  const slot = li.querySelector('.preview');
  if ($('previews').checked && item.kind === 'image' && !item.previewUrl) {
    item.previewUrl = URL.createObjectURL(item.file);
    const img = document.createElement('img');
    img.src = item.previewUrl;
    img.alt = item.name;
    slot.replaceChildren(img);
  } else if (!$('previews').checked && item.previewUrl) {
    URL.revokeObjectURL(item.previewUrl);
    item.previewUrl = null;
    slot.replaceChildren();
  }
}

function renderAll() {
  $('empty').hidden = items.length > 0;
  items.forEach(render);
  renderReview();
  if (batch?.seconds) showSpeed();
}

// Hashed, not a duplicate, not already sent in a case.
function sendable() {
  return items.filter((item) => item.md5 && !item.duplicate && !item.sent);
}

// A video's frame hashes, folded: every one of them is sent, so every one can be seen.
function framesList(frames) {
  const details = document.createElement('details');
  const summary = document.createElement('summary');
  summary.textContent = t('framesCount', { frames: frames.length });
  const list = document.createElement('ol');
  list.start = 0;
  for (const frame of frames) {
    const li = document.createElement('li');
    li.textContent = `${hex(frame.pdq)} (${frame.quality})`;
    list.append(li);
  }
  details.append(summary, list);
  return details;
}

function renderReview() {
  const rows = sendable().map((item) => {
    const tr = document.createElement('tr');
    const cells = [item.name, t(item.kind === 'video' ? 'kindVideo' : 'kindImage'), hex(item.md5),
      item.kind === 'video' ? '' : (item.pdq ? hex(item.pdq) : ''),
      item.kind === 'video' || !item.pdq ? '' : String(item.quality)];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 2 || i === 3) td.className = 'hash';
      tr.append(td);
    });
    if (item.frames?.length) tr.cells[3].append(framesList(item.frames));
    return tr;
  });
  if (!rows.length) {
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = t('nothingToSend');
    rows.push(document.createElement('tr'));
    rows[0].append(td);
  }
  $('review').tBodies[0].replaceChildren(...rows);
  const busy = running || queue.length > 0;
  $('submit').disabled = busy || sendable().length === 0;
}

function showSpeed() {
  $('speed').textContent = t('speed', { count: batch.count, seconds: batch.seconds.toFixed(2),
    rate: (batch.count / batch.seconds).toFixed(2) });
}

function addFiles(files) {
  for (const file of files) {
    const item = { id: nextId++, file, name: file.webkitRelativePath || file.name, size: file.size,
      kind: file.type.startsWith('video/') ? 'video' : 'image', progress: 0, note: null };
    const li = document.createElement('li');
    li.dataset.file = item.name;
    li.innerHTML = '<span class="preview"></span><span class="name"></span>' +
      '<button type="button" class="quiet">×</button><progress max="1" value="0"></progress>' +
      '<span class="note"></span>';
    li.querySelector('.name').textContent = item.name;
    li.querySelector('button').addEventListener('click', () => removeItem(item));
    item.li = li;
    items.push(item);
    $('list').append(li);
    note(item, 'waiting');
    queue.push(item);
  }
  renderAll();
  drain();
}

function removeItem(item) {
  const at = items.indexOf(item);
  if (at >= 0) items.splice(at, 1);
  const q = queue.indexOf(item);
  if (q >= 0) queue.splice(q, 1);
  if (item.previewUrl) URL.revokeObjectURL(item.previewUrl);
  item.li.remove();
  item.removed = true;
  renderAll();
}

const LANES = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
const idleWorkers = [];

// MD5 (and PDQ when `pdq`) of a file in a worker: {md5, pdq, error}; progress(fraction) on MD5.
function hashInWorker(file, pdq, progress) {
  const worker = idleWorkers.pop() || new Worker('hash-worker.js', { type: 'module' });
  return new Promise((resolve) => {
    worker.onmessage = ({ data }) => {
      if ('progress' in data) return progress(data.progress);
      idleWorkers.push(worker);
      return resolve(data);
    };
    worker.onerror = (e) => {
      console.error(e.message);
      worker.terminate();
      resolve({ error: { key: 'unreadable' } });
    };
    worker.postMessage({ file, pdq });
  });
}

async function hashItem(item) {
  const setProgress = (p) => { item.progress = p; item.li.querySelector('progress').value = p; };
  if (item.size > MAX_FILE_BYTES) {
    note(item, 'errTooLarge', { size: humanSize(item.size), limit: humanSize(MAX_FILE_BYTES) },
      true);
    return false;
  }
  note(item, 'hashing');
  const md5Share = item.kind === 'video' ? 0.3 : 0.5;
  const wantPdq = item.kind === 'image' && item.size <= MAX_DECODE_BYTES;
  const { md5, pdq: r, error } = await hashInWorker(item.file, wantPdq,
    (p) => setProgress(p * md5Share));
  if (!md5) {
    note(item, 'errNotImage', {}, true);
    return false;
  }
  item.li.dataset.md5 = hex(md5);
  if (item.kind === 'video') {
    item.frames = await videoFrames(item.file, (p) => setProgress(md5Share + p * (1 - md5Share)));
    item.md5 = md5;
    note(item, item.frames ? 'doneVideo' : 'doneVideoMd5', { frames: item.frames?.length });
    item.li.dataset.frames = item.frames ? item.frames.map((f) => hex(f.pdq)).join(',') : '';
    item.li.dataset.qualities = item.frames ? item.frames.map((f) => f.quality).join(',') : '';
  } else if (!wantPdq) {
    item.md5 = md5;
    note(item, 'errTooBigToOpen', { size: humanSize(item.size), limit: humanSize(MAX_DECODE_BYTES) },
      true);
  } else if (error) {
    if (error.key !== 'notImage') item.md5 = md5;
    note(item, `err${error.key[0].toUpperCase()}${error.key.slice(1)}`, error.params, true);
  } else {
    item.md5 = md5;
    // Every computed PDQ, even one too weak to send, so a test can compare it with the core's.
    item.li.dataset.pdq = hex(r.pdq);
    item.li.dataset.quality = r.quality;
    if (r.quality < MIN_TRUSTED_QUALITY) {
      note(item, 'errTooSmall', { width: r.width, height: r.height }, true);
    } else {
      Object.assign(item, { pdq: r.pdq, quality: r.quality, width: r.width, height: r.height });
      note(item, 'doneImage');
    }
  }
  setProgress(1);
  if (items.some((o) => o !== item && o.md5 && hex(o.md5) === hex(md5))) {
    item.duplicate = true;
    note(item, 'errDuplicate', {}, true);
  }
  return Boolean(item.md5);
}

// Hashes the queue, LANES files at a time; the rate shown covers the whole batch.
async function drain() {
  if (running) return;
  running = true;
  const started = performance.now();
  let count = 0;
  const lane = async () => {
    while (queue.length) {
      const item = queue.shift();
      try {
        if (await hashItem(item) && !item.removed) count++;
      } catch (e) {
        // One unreadable file must not stop the others or lose their hashes.
        console.error(e);
        note(item, 'errNotImage', {}, true);
      }
      item.li.dataset.done = '1';
      renderReview();
    }
  };
  try {
    await Promise.all(Array.from({ length: LANES }, lane));
  } finally {
    running = false;
    if (count) {
      batch = { count, seconds: (performance.now() - started) / 1000 };
      showSpeed();
    }
    renderReview();
  }
}

async function submit() {
  const chosen = sendable();
  $('submit').disabled = true;
  $('submit-message').textContent = '';
  $('submit').textContent = t('sending');
  try {
    const answer = await submitCase(chosen);
    for (const item of chosen) item.sent = true;
    $('case-id').textContent = answer.case_id;
    $('case-pin').textContent = answer.pin;
    $('submitted').textContent = t('submitted', { count: chosen.length });
    $('result').hidden = false;
    $('step4').focus();
  } catch (e) {
    $('submit-message').textContent = errorMessage(e);
  } finally {
    $('submit').textContent = t('submit');
    renderReview();
  }
}

function download() {
  const text = t('fileText', { caseId: $('case-id').textContent, pin: $('case-pin').textContent });
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `hashmatch-case-${$('case-id').textContent}.txt`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function entryFiles(entry) {
  if (entry.isFile) return [await new Promise((ok, fail) => entry.file(ok, fail))];
  const reader = entry.createReader(), out = [];
  for (;;) {
    const batchOf = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batchOf.length) return out;
    for (const child of batchOf) out.push(...await entryFiles(child));
  }
}

async function dropped(event) {
  event.preventDefault();
  $('drop').classList.remove('over');
  const entries = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length) {
    const files = [];
    for (const entry of entries) files.push(...await entryFiles(entry));
    addFiles(files);
  } else addFiles([...event.dataTransfer.files]);
}

setupPage('titleSubmit', () => { renderAll(); $('submit').textContent = t('submit'); });
for (const id of ['files', 'folder']) {
  $(id).addEventListener('change', (e) => { addFiles([...e.target.files]); e.target.value = ''; });
}
$('drop').addEventListener('dragover', (e) => { e.preventDefault(); $('drop').classList.add('over'); });
$('drop').addEventListener('dragleave', () => $('drop').classList.remove('over'));
$('drop').addEventListener('drop', dropped);
$('drop').addEventListener('keydown', (e) => {
  if (e.target === $('drop') && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); $('files').click(); }
});
$('previews').addEventListener('change', () => items.forEach(render));
$('submit').addEventListener('click', submit);
$('download').addEventListener('click', download);
renderAll();
document.body.dataset.ready = '1';
