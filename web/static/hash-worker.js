// Hashes one file off the page's main thread, so the page stays responsive and several files are
// hashed at once (one worker per core, up to 4): MD5 always, PDQ when asked (photos). Answers
// {progress} messages, then {md5, pdq: {pdq, quality, width, height} | undefined, error}.
import { md5File } from './md5.js';
import { ImageError, pdqOfImage } from './pdq.js';

onmessage = async ({ data: { file, pdq } }) => {
  // The photo decodes on the browser's image threads while the MD5 is computed here.
  const picture = pdq ? pdqOfImage(file).then((r) => ({ r }), (e) => ({ e })) : Promise.resolve({});
  try {
    const md5 = await md5File(file, (progress) => postMessage({ progress }));
    const { r, e } = await picture;
    if (e && !(e instanceof ImageError)) console.error(e);
    const error = e && (e instanceof ImageError ? { key: e.key, params: e.params } : { key: 'notImage' });
    postMessage({ md5, pdq: r, error });
  } catch (e) {
    console.error(e);
    postMessage({ error: { key: 'unreadable' } });
  }
};
