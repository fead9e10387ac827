// The Cases API over gRPC-Web: a few protobuf messages encoded by field number (the numbers are
// those of proto/hashmatch/v1/hashmatch.proto; tests/test_web.py checks them against it) and the
// gRPC-Web framing around one fetch. Same origin only; nothing but these hash messages is sent.

const FIELDS = {
  SubmitCaseRequest: { media: 1 },
  MediaHashes: { image: 1, video: 2 },
  ImageHashes: { md5: 1, pdq: 2, quality: 3 },
  VideoHashes: { md5: 1, frame_pdqs: 2, frame_qualities: 3 },
  SubmitCaseResponse: { case_id: 1, pin: 2, entry_ids: 3, sequence: 4 },
  GetCaseStatusRequest: { case_id: 1, pin: 2 },
  // items and total are messages the page does not read: summary says the same in words.
  GetCaseStatusResponse: { case_id: 1, state: 2, image_count: 3, video_count: 4,
    created_unix: 5, withdrawn_unix: 6, items: 7, total: 8, summary: 9 },
  WithdrawCaseRequest: { case_id: 1, pin: 2 },
  WithdrawCaseResponse: { sequence: 1 },
};

export const CASE_STATES = { 1: 'active', 2: 'withdrawn' };

class Writer {
  constructor() { this.parts = []; this.length = 0; }
  bytes(b) { this.parts.push(b); this.length += b.length; }
  varint(n) {
    const out = [];
    while (n > 127) { out.push((n % 128) | 128); n = Math.floor(n / 128); }
    out.push(n);
    this.bytes(Uint8Array.from(out));
  }
  field(number, wireType) { this.varint(number * 8 + wireType); }
  lengthDelimited(number, b) { this.field(number, 2); this.varint(b.length); this.bytes(b); }
  finish() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

const utf8 = new TextEncoder();

function encodeImage(item) {
  const f = FIELDS.ImageHashes, w = new Writer();
  w.lengthDelimited(f.md5, item.md5);
  if (item.pdq) {
    w.lengthDelimited(f.pdq, item.pdq);
    w.field(f.quality, 0); w.varint(item.quality);
  }
  return w.finish();
}

function encodeVideo(item) {
  const f = FIELDS.VideoHashes, w = new Writer();
  w.lengthDelimited(f.md5, item.md5);
  if (item.frames && item.frames.length) {
    const pdqs = new Uint8Array(32 * item.frames.length);
    item.frames.forEach((fr, i) => pdqs.set(fr.pdq, 32 * i));
    w.lengthDelimited(f.frame_pdqs, pdqs);
    const q = new Writer();
    for (const fr of item.frames) q.varint(fr.quality);
    w.lengthDelimited(f.frame_qualities, q.finish());
  }
  return w.finish();
}

export function encodeSubmit(items) {
  const w = new Writer();
  for (const item of items) {
    const m = new Writer();
    if (item.kind === 'video') m.lengthDelimited(FIELDS.MediaHashes.video, encodeVideo(item));
    else m.lengthDelimited(FIELDS.MediaHashes.image, encodeImage(item));
    w.lengthDelimited(FIELDS.SubmitCaseRequest.media, m.finish());
  }
  return w.finish();
}

function encodeCaseAndPin(fields, caseId, pin) {
  const w = new Writer();
  w.lengthDelimited(fields.case_id, utf8.encode(caseId));
  w.lengthDelimited(fields.pin, utf8.encode(pin));
  return w.finish();
}

// {field number: [values]}: varints as Numbers, length-delimited fields as Uint8Arrays.
function decodeFields(b) {
  const out = {};
  let at = 0;
  const varint = () => {
    let n = 0, scale = 1, byte;
    do {
      if (at >= b.length) throw new Error('truncated answer');
      byte = b[at++]; n += (byte & 127) * scale; scale *= 128;
    } while (byte & 128);
    return n;
  };
  while (at < b.length) {
    const key = varint(), number = Math.floor(key / 8), type = key % 8;
    let value;
    if (type === 0) value = varint();
    else if (type === 2) { const len = varint(); value = b.subarray(at, at + len); at += len; }
    else if (type === 1) { value = b.subarray(at, at + 8); at += 8; }
    else if (type === 5) { value = b.subarray(at, at + 4); at += 4; }
    else throw new Error(`unexpected wire type ${type}`);
    (out[number] = out[number] || []).push(value);
  }
  return out;
}

function decodeMessage(name, b) {
  const raw = decodeFields(b), result = {};
  const utf8d = new TextDecoder();
  for (const [field, number] of Object.entries(FIELDS[name])) {
    const values = raw[number] || [];
    const last = values[values.length - 1];
    result[field] = last instanceof Uint8Array ? utf8d.decode(last) : (last ?? 0);
  }
  return result;
}

export class RpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

export const CODES = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8, UNAVAILABLE: 14 };

async function call(method, body, answerType) {
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(1, body.length);
  frame.set(body, 5);
  let response;
  try {
    response = await fetch(`/hashmatch.v1.Cases/${method}`, {
      method: 'POST', body: frame, credentials: 'omit', cache: 'no-store',
      headers: { 'Content-Type': 'application/grpc-web+proto', 'X-Grpc-Web': '1' },
    });
  } catch (e) {
    throw new RpcError(CODES.UNAVAILABLE, String(e));
  }
  if (!response.ok) throw new RpcError(CODES.UNAVAILABLE, `HTTP ${response.status}`);
  const b = new Uint8Array(await response.arrayBuffer());
  let message = null, status = null, detail = '';
  for (let at = 0; at + 5 <= b.length;) {
    const flags = b[at], len = new DataView(b.buffer, b.byteOffset + at + 1, 4).getUint32(0);
    const payload = b.subarray(at + 5, at + 5 + len);
    at += 5 + len;
    if (flags & 0x80) {
      for (const line of new TextDecoder().decode(payload).split('\r\n')) {
        const [k, ...rest] = line.split(':');
        if (k === 'grpc-status') status = Number(rest.join(':'));
        if (k === 'grpc-message') detail = decodeURIComponent(rest.join(':'));
      }
    } else message = payload;
  }
  if (status !== 0) throw new RpcError(status ?? 2, detail || 'no status in the answer');
  return decodeMessage(answerType, message || new Uint8Array(0));
}

export function submitCase(items) {
  return call('SubmitCase', encodeSubmit(items), 'SubmitCaseResponse');
}

export function caseStatus(caseId, pin) {
  return call('GetCaseStatus', encodeCaseAndPin(FIELDS.GetCaseStatusRequest, caseId, pin),
    'GetCaseStatusResponse');
}

export function withdrawCase(caseId, pin) {
  return call('WithdrawCase', encodeCaseAndPin(FIELDS.WithdrawCaseRequest, caseId, pin),
    'WithdrawCaseResponse');
}

export { FIELDS };
