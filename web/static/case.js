// The status and withdraw pages: one form (case id + PIN), one Cases call, the answer in words.
// A failed call keeps what was typed.
import { setupLanguageSwitch, t } from './i18n.js';
import { caseStatus, withdrawCase, CASE_STATES } from './grpcweb.js';
import { errorMessage } from './common.js';

const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
let last = null;

const date = (unix) => new Date(unix * 1000).toLocaleString(document.documentElement.lang);

function show() {
  if (!last) return;
  if (page === 'withdraw') { $('answer').textContent = t('withdrawn'); return; }
  const state = CASE_STATES[last.state] === 'withdrawn'
    ? t('stateWithdrawn', { date: date(last.withdrawn_unix) }) : t('stateActive');
  $('answer').textContent = `${state} ${t('counts', { images: last.image_count,
    videos: last.video_count, date: date(last.created_unix) })}`;
}

async function send(event) {
  event.preventDefault();
  $('error').textContent = '';
  $('answer').textContent = '';
  last = null;
  const caseId = $('case-id').value.trim(), pin = $('pin').value.trim();
  if (page === 'withdraw' && !$('confirm').checked) {
    $('error').textContent = t('withdrawNeedConfirm');
    return;
  }
  try {
    last = await (page === 'withdraw' ? withdrawCase : caseStatus)(caseId, pin);
    show();
  } catch (e) {
    $('error').textContent = errorMessage(e);
  }
}

setupLanguageSwitch(show);
$('case-form').addEventListener('submit', send);
document.body.dataset.ready = '1';
