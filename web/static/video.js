// vPDQ in the page: frames at one a second from a <video> element, drawn to a canvas and hashed
// with the same PDQ as photos. Browser decoders do not give FFmpeg's exact frames, so these are
// near (not equal) to `hashmatch hash`'s; null when this browser cannot decode the video.
import { pdqOfPixels, pixelsOf, storedOrderView } from './pdq.js';

const MAX_FRAMES = 7200;
const WAIT_MS = 15000;

function once(target, ok, fail) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), WAIT_MS);
    const done = (value) => () => { clearTimeout(timer); resolve(value); };
    target.addEventListener(ok, done(true), { once: true });
    target.addEventListener(fail, done(false), { once: true });
  });
}

// [{pdq, quality}] for t = 0, 1, 2, ... seconds, or null; progress(fraction) after each frame.
export async function videoFrames(file, progress = () => {}) {
  const url = URL.createObjectURL(file);
  const video = document.createElement('video');
  video.muted = true;
  video.preload = 'auto';
  try {
    const loaded = once(video, 'loadeddata', 'error');
    video.src = url;
    if (!(await loaded) || !Number.isFinite(video.duration) || !video.videoWidth) return null;
    const width = video.videoWidth, height = video.videoHeight;
    const view = storedOrderView(1, width, height);
    const count = Math.min(MAX_FRAMES, Math.max(1, Math.ceil(video.duration)));
    const frames = [];
    for (let i = 0; i < count; i++) {
      const seeked = once(video, 'seeked', 'error');
      video.currentTime = Math.min(i, video.duration);
      if (!(await seeked)) return null;
      frames.push(await pdqOfPixels(pixelsOf(video, width, height), view));
      progress((i + 1) / count);
    }
    return frames;
  } finally {
    video.removeAttribute('src');
    video.load();
    URL.revokeObjectURL(url);
  }
}
