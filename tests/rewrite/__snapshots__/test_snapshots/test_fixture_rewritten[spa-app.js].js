// The shelter's single-page app: an ES module with client-side routing, a fetch, an XMLHttpRequest,
// a lazily imported chunk and an image whose URL is built at run time. It knows nothing about proxies.
import { renderItems, setText } from '/t3st1d/modules/render.js';

// Kept in variables, so the URLs below are only known at run time.
const ASSET_DIR = '/assets/';
const API = '/api';
const FEATURED_ID = 1;

// The route table, as a router holds it: views by absolute path.
const ROUTES = [
  { path: '/', view: 'home', label: 'Home' },
  { path: '/about', view: 'about', label: 'About' },
];

// Matching by the last segment keeps deep links working wherever the app is mounted.
function viewFor(pathname) {
  const segment = pathname.replace(/\/+$/, '').split('/').pop();
  const route = ROUTES.find((candidate) => candidate.path === '/' + segment);
  return route ? route.view : 'home';
}

function renderNav() {
  const nav = document.getElementById('nav');
  for (const route of ROUTES) {
    const link = document.createElement('a');
    link.id = 'nav-' + route.view;
    link.href = route.path;
    link.textContent = route.label;
    link.addEventListener('click', (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey) return;
      event.preventDefault();
      history.pushState({ view: route.view }, '', route.path);
      show(route.view);
    });
    nav.append(link);
  }
}

async function show(view) {
  setText('route', view);
  document.getElementById('view-home').hidden = view !== 'home';
  document.getElementById('view-about').hidden = view !== 'about';
  if (view === 'about') {
    const chunk = await import('/t3st1d/chunks/about.js');
    chunk.renderAbout(document.getElementById('about-text'));
  }
}

function loadItems() {
  fetch('/t3st1d/api/items')
    .then((response) => response.json())
    .then((items) => renderItems(document.getElementById('items'), items))
    .catch((error) => setText('items-count', 'failed: ' + error));
}

function loadFeatured() {
  fetch(`${API}/items/${FEATURED_ID}`)
    .then((response) => response.json())
    .then((item) => setText('item-detail', item.name))
    .catch((error) => setText('item-detail', 'failed: ' + error));
}

function loadStatus() {
  const xhr = new XMLHttpRequest();
  xhr.open('GET', '/t3st1d/api/status');
  xhr.responseType = 'json';
  xhr.onload = () => setText('status', xhr.status === 200 ? xhr.response.status : 'HTTP ' + xhr.status);
  xhr.onerror = () => setText('status', 'failed');
  xhr.send();
}

function showPetOfTheDay(name) {
  const img = document.getElementById('runtime-img');
  img.addEventListener('load', () => { img.dataset.loaded = 'true'; });
  img.addEventListener('error', () => { img.dataset.loaded = 'false'; });
  img.src = ASSET_DIR + name + '.svg';
}

window.addEventListener('popstate', () => show(viewFor(location.pathname)));

renderNav();
show(viewFor(location.pathname));
loadItems();
loadFeatured();
loadStatus();
showPetOfTheDay('cat');
