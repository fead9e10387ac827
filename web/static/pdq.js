// The page's PDQ: decodes an image in the browser and hashes its pixels with pdq.wasm, the
// project's own C++ PDQ compiled to WebAssembly (scripts/build_web.sh), so the hash equals
// `hashmatch hash` on the same pixels. Pixel rules follow clients/hashing.py: stored pixel order
// (an EXIF orientation the browser applied is undone), no colour management, alpha dropped.

export const MIN_TRUSTED_QUALITY = 50;
const MAX_PIXELS = 100e6;

let instance = null;

async function wasm() {
  if (!instance) {
    const imports = {
      env: { emscripten_notify_memory_growth: () => {} },
      wasi_snapshot_preview1: { proc_exit: (code) => { throw new Error(`pdq.wasm exit ${code}`); } },
    };
    const { instance: inst } = await WebAssembly.instantiateStreaming(fetch('pdq.wasm'), imports);
    inst.exports._initialize();
    instance = inst;
  }
  return instance.exports;
}

export class ImageError extends Error {
  constructor(key, params = {}) { super(key); this.key = key; this.params = params; }
}

// EXIF orientation (1..8) of a JPEG, 1 when absent; reads only the first 128 KiB.
export async function jpegOrientation(file) {
  const b = new DataView(await file.slice(0, 131072).arrayBuffer());
  if (b.byteLength < 4 || b.getUint16(0) !== 0xffd8) return 1;
  for (let at = 2; at + 4 <= b.byteLength;) {
    const marker = b.getUint16(at), len = b.getUint16(at + 2);
    if ((marker & 0xff00) !== 0xff00 || marker === 0xffda) return 1;
    const exif = at + 4;
    if (marker === 0xffe1 && exif + 14 <= b.byteLength && b.getUint32(exif) === 0x45786966) {
      const tiff = exif + 6, little = b.getUint16(tiff) === 0x4949;
      const ifd = tiff + b.getUint32(tiff + 4, little);
      if (ifd + 2 > b.byteLength) return 1;
      const count = b.getUint16(ifd, little);
      for (let i = 0; i < count && ifd + 2 + 12 * i + 12 <= b.byteLength; i++) {
        const entry = ifd + 2 + 12 * i;
        if (b.getUint16(entry, little) === 0x0112) {
          const o = b.getUint16(entry + 8, little);
          return o >= 1 && o <= 8 ? o : 1;
        }
      }
      return 1;
    }
    at += 2 + len;
  }
  return 1;
}

// Where stored pixel (r, c) lies in the browser's oriented RGBA buffer of width `width`:
// {first, rowStride, colStride, rows, cols} in bytes, for hm_pdq_rgba.
export function storedOrderView(orientation, width, height) {
  const t = orientation >= 5;
  const h = t ? width : height, w = t ? height : width;
  const yx = {
    1: (r, c) => [r, c], 2: (r, c) => [r, w - 1 - c], 3: (r, c) => [h - 1 - r, w - 1 - c],
    4: (r, c) => [h - 1 - r, c], 5: (r, c) => [c, r], 6: (r, c) => [c, h - 1 - r],
    7: (r, c) => [w - 1 - c, h - 1 - r], 8: (r, c) => [w - 1 - c, r],
  }[orientation];
  const addr = (r, c) => { const [y, x] = yx(r, c); return 4 * (y * width + x); };
  const first = addr(0, 0);
  return { first, rowStride: addr(1, 0) - first, colStride: addr(0, 1) - first, rows: h, cols: w };
}

// PDQ of RGBA pixels (Uint8ClampedArray, row-major) seen through `view`: {pdq (32 bytes), quality}.
export async function pdqOfPixels(rgba, view) {
  const x = await wasm();
  const ptr = x.malloc(rgba.length), out = x.malloc(32);
  try {
    new Uint8Array(x.memory.buffer, ptr, rgba.length).set(rgba);
    const quality = x.hm_pdq_rgba(ptr + view.first, view.rows, view.cols, view.rowStride,
      view.colStride, out);
    return { pdq: new Uint8Array(x.memory.buffer, out, 32).slice(), quality };
  } finally {
    x.free(ptr); x.free(out);
  }
}

// Decoded RGBA pixels of a canvas-drawable source, in the orientation the browser shows.
export function pixelsOf(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
  ctx.drawImage(source, 0, 0);
  return ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data;
}

// {pdq, quality, width, height} of an image file (stored pixel order, as `hashmatch hash`).
// Throws ImageError('notImage' | 'tooManyPixels' | 'transparent').
export async function pdqOfImage(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch (e) {
    throw new ImageError('notImage');
  }
  try {
    const { width, height } = bitmap;
    if (width * height > MAX_PIXELS) throw new ImageError('tooManyPixels', { width, height });
    const rgba = pixelsOf(bitmap, width, height);
    for (let i = 3; i < rgba.length; i += 4) {
      // The canvas keeps colours premultiplied, so under transparency they are no longer the
      // file's; the core would hash those exact colours, so only an exact MD5 is honest here.
      if (rgba[i] !== 255) throw new ImageError('transparent');
    }
    const view = storedOrderView(await jpegOrientation(file), width, height);
    return { ...(await pdqOfPixels(rgba, view)), width: view.cols, height: view.rows };
  } finally {
    bitmap.close();
  }
}
