// case.html: checks a case (?do=status) or withdraws it (?do=withdraw) with the case id and PIN;
// one Cases call, the answer in words. A failed call keeps what was typed.
import { setupPage, t } from './i18n.js';
import { caseStatus, withdrawCase, CASE_STATES } from './grpcweb.js';
import { errorMessage } from './common.js';

const $ = (id) => document.getElementById(id);
const withdraw = new URLSearchParams(location.search).get('do') === 'withdraw';
const titleKey = withdraw ? 'titleWithdraw' : 'titleStatus';
let last = null;

const date = (unix) => new Date(unix * 1000).toLocaleString(document.documentElement.lang);

function show() {
  $('title').textContent = t(titleKey);
  $('send').textContent = t(withdraw ? 'withdrawButton' : 'checkButton');
  if (!last) return;
  if (withdraw) { $('answer').textContent = t('withdrawn'); return; }
  const state = CASE_STATES[last.state] === 'withdrawn'
    ? t('stateWithdrawn', { date: date(last.withdrawn_unix) }) : t('stateActive');
  $('answer').textContent = `${state} ${t('counts', { images: last.image_count,
    videos: last.video_count, date: date(last.created_unix) })} ${last.summary || ''}`.trim();
}

async function send(event) {
  event.preventDefault();
  $('error').textContent = '';
  $('answer').textContent = '';
  last = null;
  if (withdraw && !$('confirm').checked) {
    $('error').textContent = t('withdrawNeedConfirm');
    return;
  }
  try {
    const caseId = $('case-id').value.trim(), pin = $('pin').value.trim();
    last = await (withdraw ? withdrawCase : caseStatus)(caseId, pin);
    show();
  } catch (e) {
    $('error').textContent = errorMessage(e);
  }
}

$('confirm-line').hidden = !withdraw;
setupPage(titleKey, show);
show();
$('case-form').addEventListener('submit', send);
document.body.dataset.ready = '1';
