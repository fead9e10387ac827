// Every string the pages show, in English and Spanish. Elements name their string with
// data-i18n (text) or data-i18n-label (aria-label); code asks t(key, {param}). The language comes
// from ?lang= or the browser, and the switch keeps it in the links: nothing is stored.

export const CATALOGUE = {
  en: {
    langName: 'English',
    language: 'Language',
    navLabel: 'Pages',
    skip: 'Skip to the main content',
    navSubmit: 'Protect photos and videos',
    navStatus: 'Check a case',
    navWithdraw: 'Withdraw a case',
    titleSubmit: 'Stop your private photos and videos from being shared',
    titleStatus: 'Check your case',
    titleWithdraw: 'Withdraw your case',
    promise: 'Your photos and videos never leave this device. Nobody sees them. This page makes a short fingerprint (a "hash") of each file, here in your browser, and only those fingerprints are sent.',
    limits: 'Platforms that take part use the fingerprints to find and remove copies. We cannot remove images from the whole internet, only from those platforms.',
    step1: '1. Choose photos or videos',
    chooseFiles: 'Choose files',
    chooseFolder: 'Choose a folder',
    dropHint: 'Or drag files here and drop them.',
    dropZone: 'Drop area for photos and videos',
    showPreviews: 'Show small previews (they stay on this device)',
    step2: '2. Fingerprints being made',
    noFiles: 'No files chosen yet.',
    progressOf: 'Progress for {name}',
    remove: 'Remove {name}',
    waiting: 'Waiting…',
    hashing: 'Making fingerprints…',
    doneImage: 'Done: photo fingerprint and exact-copy fingerprint.',
    doneVideo: 'Done: exact-copy fingerprint and {frames} frame fingerprints.',
    doneVideoMd5: 'Done: exact-copy fingerprint only. This browser cannot open this video, so copies that were edited or re-encoded will not be found.',
    errNotImage: 'This file is not a photo or video this browser can open. Nothing was made for it; your other files are kept.',
    errTooSmall: 'This photo is too small or too plain ({width}×{height} pixels) for a photo fingerprint. Only its exact-copy fingerprint will be sent.',
    errTransparent: 'This photo has see-through parts, which this page cannot fingerprint exactly. Only its exact-copy fingerprint will be sent.',
    errTooManyPixels: 'This photo is too big to open here ({width}×{height} pixels). Only its exact-copy fingerprint will be sent.',
    errTooBigToOpen: 'This photo is too large to open here ({size}; the limit is {limit}). Only its exact-copy fingerprint will be sent.',
    errTooLarge: 'This file is too large ({size}); the limit is {limit}. Nothing was made for it; your other files are kept.',
    errDuplicate: 'This file is already in the list.',
    speed: '{count} file(s) fingerprinted in {seconds} s ({rate} per second).',
    step3: '3. Check what will be sent',
    reviewIntro: 'Only the fingerprints below will be sent. No photo, video, file name or preview leaves this device.',
    colFile: 'File (not sent)',
    colKind: 'Kind',
    colMd5: 'Exact-copy fingerprint (MD5)',
    colPdq: 'Photo fingerprint (PDQ)',
    colQuality: 'Quality',
    kindImage: 'photo',
    kindVideo: 'video',
    framesCount: '{frames} frames',
    nothingToSend: 'Nothing to send yet.',
    submit: 'Send fingerprints',
    sending: 'Sending…',
    step4: '4. Your case number and PIN',
    saveWarning: 'Write these down or download them now. They are shown only once and cannot be recovered. You need them to check or withdraw your case.',
    caseId: 'Case number',
    pin: 'PIN',
    download: 'Download as a text file',
    fileText: 'hashmatch case\nCase number: {caseId}\nPIN: {pin}\nKeep this safe. It cannot be recovered.\n',
    submitted: 'Your fingerprints were saved: {count} item(s).',
    checkButton: 'Check',
    withdrawButton: 'Withdraw my case',
    withdrawConfirm: 'I understand: platforms will stop looking for these photos and videos.',
    withdrawNeedConfirm: 'Please tick the box to confirm first.',
    stateActive: 'Active: platforms are checking for your photos and videos.',
    stateWithdrawn: 'Withdrawn on {date}: platforms no longer check for them.',
    counts: '{images} photo(s), {videos} video(s), saved on {date}.',
    withdrawn: 'Your case was withdrawn. Platforms no longer look for these photos and videos.',
    errWrongPin: 'That case number and PIN do not match. Please check both and try again.',
    errNoCase: 'No case has that number. Please check it and try again.',
    errRefused: 'The server could not accept this: {detail}',
    errBusy: 'The service is busy. Please try again in a minute.',
    errOffline: 'The service cannot be reached right now. Nothing was lost; please try again.',
    help: 'Need to talk to someone? You can contact a support line in your country; you do not have to do this alone.',
  },
  es: {
    langName: 'Español',
    language: 'Idioma',
    navLabel: 'Páginas',
    skip: 'Ir al contenido principal',
    navSubmit: 'Proteger fotos y vídeos',
    navStatus: 'Consultar un caso',
    navWithdraw: 'Retirar un caso',
    titleSubmit: 'Impide que se compartan tus fotos y vídeos privados',
    titleStatus: 'Consulta tu caso',
    titleWithdraw: 'Retira tu caso',
    promise: 'Tus fotos y vídeos nunca salen de este dispositivo. Nadie los ve. Esta página crea una huella corta (un «hash») de cada archivo, aquí en tu navegador, y solo se envían esas huellas.',
    limits: 'Las plataformas participantes usan las huellas para encontrar y eliminar copias. No podemos eliminar imágenes de todo internet, solo de esas plataformas.',
    step1: '1. Elige fotos o vídeos',
    chooseFiles: 'Elegir archivos',
    chooseFolder: 'Elegir una carpeta',
    dropHint: 'O arrastra los archivos y suéltalos aquí.',
    dropZone: 'Zona para soltar fotos y vídeos',
    showPreviews: 'Mostrar vistas previas pequeñas (se quedan en este dispositivo)',
    step2: '2. Huellas en preparación',
    noFiles: 'Todavía no has elegido archivos.',
    progressOf: 'Progreso de {name}',
    remove: 'Quitar {name}',
    waiting: 'En espera…',
    hashing: 'Creando huellas…',
    doneImage: 'Listo: huella de foto y huella de copia exacta.',
    doneVideo: 'Listo: huella de copia exacta y {frames} huellas de fotogramas.',
    doneVideoMd5: 'Listo: solo huella de copia exacta. Este navegador no puede abrir este vídeo, así que no se encontrarán copias editadas o recodificadas.',
    errNotImage: 'Este archivo no es una foto ni un vídeo que este navegador pueda abrir. No se creó nada para él; tus otros archivos se conservan.',
    errTooSmall: 'Esta foto es demasiado pequeña o uniforme ({width}×{height} píxeles) para una huella de foto. Solo se enviará su huella de copia exacta.',
    errTransparent: 'Esta foto tiene partes transparentes, que esta página no puede procesar con exactitud. Solo se enviará su huella de copia exacta.',
    errTooManyPixels: 'Esta foto es demasiado grande para abrirla aquí ({width}×{height} píxeles). Solo se enviará su huella de copia exacta.',
    errTooBigToOpen: 'Esta foto es demasiado grande para abrirla aquí ({size}; el límite es {limit}). Solo se enviará su huella de copia exacta.',
    errTooLarge: 'Este archivo es demasiado grande ({size}); el límite es {limit}. No se creó nada para él; tus otros archivos se conservan.',
    errDuplicate: 'Este archivo ya está en la lista.',
    speed: '{count} archivo(s) procesados en {seconds} s ({rate} por segundo).',
    step3: '3. Revisa lo que se enviará',
    reviewIntro: 'Solo se enviarán las huellas de abajo. Ninguna foto, vídeo, nombre de archivo ni vista previa sale de este dispositivo.',
    colFile: 'Archivo (no se envía)',
    colKind: 'Tipo',
    colMd5: 'Huella de copia exacta (MD5)',
    colPdq: 'Huella de foto (PDQ)',
    colQuality: 'Calidad',
    kindImage: 'foto',
    kindVideo: 'vídeo',
    framesCount: '{frames} fotogramas',
    nothingToSend: 'Todavía no hay nada que enviar.',
    submit: 'Enviar huellas',
    sending: 'Enviando…',
    step4: '4. Tu número de caso y tu PIN',
    saveWarning: 'Anótalos o descárgalos ahora. Solo se muestran una vez y no se pueden recuperar. Los necesitas para consultar o retirar tu caso.',
    caseId: 'Número de caso',
    pin: 'PIN',
    download: 'Descargar como archivo de texto',
    fileText: 'Caso de hashmatch\nNúmero de caso: {caseId}\nPIN: {pin}\nGuárdalo en un lugar seguro. No se puede recuperar.\n',
    submitted: 'Tus huellas se guardaron: {count} elemento(s).',
    checkButton: 'Consultar',
    withdrawButton: 'Retirar mi caso',
    withdrawConfirm: 'Entiendo: las plataformas dejarán de buscar estas fotos y vídeos.',
    withdrawNeedConfirm: 'Marca primero la casilla para confirmar.',
    stateActive: 'Activo: las plataformas están buscando tus fotos y vídeos.',
    stateWithdrawn: 'Retirado el {date}: las plataformas ya no los buscan.',
    counts: '{images} foto(s), {videos} vídeo(s), guardados el {date}.',
    withdrawn: 'Tu caso se retiró. Las plataformas ya no buscan estas fotos y vídeos.',
    errWrongPin: 'El número de caso y el PIN no coinciden. Revisa ambos e inténtalo de nuevo.',
    errNoCase: 'No hay ningún caso con ese número. Revísalo e inténtalo de nuevo.',
    errRefused: 'El servidor no pudo aceptar esto: {detail}',
    errBusy: 'El servicio está ocupado. Inténtalo de nuevo en un minuto.',
    errOffline: 'No se puede contactar con el servicio ahora. No se ha perdido nada; inténtalo de nuevo.',
    help: '¿Necesitas hablar con alguien? Puedes contactar con una línea de apoyo de tu país; no tienes que hacerlo sola ni solo.',
  },
};

export const LANGUAGES = Object.keys(CATALOGUE);

function chooseLanguage() {
  const asked = new URLSearchParams(location.search).get('lang');
  if (LANGUAGES.includes(asked)) return asked;
  const browser = (navigator.language || 'en').slice(0, 2);
  return LANGUAGES.includes(browser) ? browser : 'en';
}

export let lang = chooseLanguage();

export function t(key, params = {}) {
  const text = CATALOGUE[lang][key] ?? CATALOGUE.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

const PAGES = [['index.html', 'navSubmit'], ['case.html?do=status', 'navStatus'],
  ['case.html?do=withdraw', 'navWithdraw']];

// The header every page shares: page links and the language switch.
function buildHeader() {
  const header = document.getElementById('site-header');
  const nav = document.createElement('nav');
  nav.dataset.i18nLabel = 'navLabel';
  for (const [href, key] of PAGES) {
    const a = document.createElement('a');
    a.dataset.pageLink = href;
    a.dataset.i18n = key;
    nav.append(a);
  }
  const label = document.createElement('label');
  label.htmlFor = 'lang';
  label.dataset.i18n = 'language';
  const select = document.createElement('select');
  select.id = 'lang';
  for (const code of LANGUAGES) select.add(new Option(CATALOGUE[code].langName, code));
  header.append(nav, label, select);
  return select;
}

function withLanguage(href) {
  const url = new URL(href, location.href);
  url.searchParams.set('lang', lang);
  return url.pathname + url.search;
}

// Fills every data-i18n / data-i18n-label element and the page links; `titleKey` names the title.
export function translatePage(titleKey) {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  }
  for (const a of document.querySelectorAll('a[data-page-link]')) {
    a.href = withLanguage(a.dataset.pageLink);
  }
  document.title = t(titleKey);
}

// Builds the header; the language switch changes the words in place (work on the page is kept)
// and the URL. `onChange` re-renders what the page wrote itself.
export function setupPage(titleKey, onChange) {
  const select = buildHeader();
  select.value = lang;
  select.addEventListener('change', () => {
    lang = select.value;
    history.replaceState(null, '', withLanguage(location.href));
    translatePage(titleKey);
    onChange();
  });
  translatePage(titleKey);
}
