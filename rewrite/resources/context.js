// Injected first in <head> by rewrite/inject.py: keeps absolute paths and same-origin URLs that the page
// builds at run time inside the tunnel's prefix, by the rules of rewrite/urls.py. Keep it pure ASCII.
(function () {
  'use strict';
  // Injected or run twice: the first copy wins. Own property: window.X also finds an element with id X.
  if (Object.prototype.hasOwnProperty.call(window, '__TUNNEL_CONTEXT__')) return;
  var config = __TUNNEL_CONTEXT_CONFIG__;
  var base = config.basePath;
  var publicOrigin = config.publicOrigin;
  var upstream = config.upstreamOrigins;
  var MARK = '__tunnelWrapped__';
  // ws: and wss: URLs name the origins of http: and https: (same default ports).
  var HTTP_OF = { 'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:' };
  var SCHEME = /^[a-z][a-z0-9+.-]*:/i;
  // URL parsers strip leading and trailing C0 controls and spaces (URL Standard, basic URL parser).
  var PADDING = /^[\u0000-\u0020]+|[\u0000-\u0020]+$/g;

  function isPrefixed(path) {
    if (path.indexOf(base) !== 0) return false;
    return path.length === base.length || '/?#'.indexOf(path.charAt(base.length)) !== -1;
  }

  // The public form of a URL (a string or URL object), or the argument itself when it stays as it is.
  function toPublic(value) {
    var raw = value instanceof URL ? value.href : value;
    if (typeof raw !== 'string') return value;
    var s = raw.replace(PADDING, '');
    var second = s.charAt(1);
    if (s.charAt(0) === '/' && second !== '/' && second !== '\\') {
      return base && !isPrefixed(s) ? base + s : value;
    }
    // Relative references ("x", "./x", "?q", "#f") resolve under the page, which is under the prefix.
    if (s.charAt(0) !== '/' && !SCHEME.test(s)) return value;
    var url;
    try {
      url = new URL(s, location.href);
    } catch (e) {
      return value;
    }
    var scheme = HTTP_OF[url.protocol];
    // Other schemes (data:, blob:, mailto:) and URLs with credentials are never ours to touch.
    if (!scheme || url.username || url.password) return value;
    var origin = scheme + '//' + url.host;
    var target;
    if (upstream.indexOf(origin) !== -1) {
      target = publicOrigin;
    } else if (base && (origin === location.origin || origin === publicOrigin)) {
      if (isPrefixed(url.pathname)) return value;
      target = origin;
    } else {
      return value;
    }
    if (url.protocol === 'ws:' || url.protocol === 'wss:') target = target.replace(/^http/, 'ws');
    return target + base + url.pathname + url.search + url.hash;
  }

  // "a.png 1x, /b.png 2x": a candidate's URL is the run of non-space characters after a comma (HTML
  // Standard, parsing a srcset attribute), so the commas of a data: URL stay inside their URL.
  function srcsetToPublic(value) {
    if (typeof value !== 'string') return value;
    return value.replace(/(^|,)(\s*)(\S+)/g, function (all, comma, space, url) {
      return comma + space + toPublic(url);
    });
  }

  Object.defineProperty(window, '__TUNNEL_CONTEXT__', {
    value: Object.freeze({
      tunnelId: config.tunnelId,
      basePath: base,
      publicOrigin: publicOrigin,
      upstreamOrigins: Object.freeze(upstream.slice()),
      url: function (path) {
        var mapped = toPublic(path);
        return mapped instanceof URL ? mapped.href : mapped;
      },
      getBaseUrl: function () {
        return location.origin + base;
      },
    }),
  });

  // A copy of args with args[index] mapped, or as given when odd input makes map throw. Originals are
  // called outside this try, so their own errors reach the page unchanged.
  function mapArg(args, index, map) {
    args = Array.prototype.slice.call(args);
    try {
      if (args.length > index) args[index] = map(args[index]);
    } catch (e) {
    }
    return args;
  }

  // Replace obj[name] by makeWrapper(original) unless it is already one of ours.
  function wrap(obj, name, makeWrapper) {
    try {
      var original = obj && obj[name];
      if (typeof original !== 'function' || original[MARK]) return;
      var wrapped = makeWrapper(original);
      Object.defineProperty(wrapped, MARK, { value: true });
      Object.defineProperty(wrapped, 'name', { value: name });
      obj[name] = wrapped;
    } catch (e) {
      // A read-only member keeps its original.
    }
  }

  function wrapArgument(obj, name, index) {
    wrap(obj, name, function (original) {
      return function () {
        return original.apply(this, mapArg(arguments, index, toPublic));
      };
    });
  }

  // A Request for a new URL copies the old one's members; a body is read first, because a body that is
  // still a stream is uploaded by Chrome only over HTTP/2.
  var REQUEST_INIT = ['method', 'headers', 'mode', 'credentials', 'cache', 'redirect', 'referrer',
    'referrerPolicy', 'integrity', 'keepalive', 'signal'];
  wrap(window, 'fetch', function (fetch) {
    return function (input) {
      var self = this;
      var args = mapArg(arguments, 0, toPublic);
      var url = input instanceof Request ? toPublic(input.url) : '';
      if (!url || url === input.url) return fetch.apply(self, args);
      if (input.method === 'GET' || input.method === 'HEAD') {
        return fetch.apply(self, mapArg(args, 0, function (request) {
          return new Request(url, request);
        }));
      }
      var init = {};
      REQUEST_INIT.forEach(function (key) {
        init[key] = input[key];
      });
      return input.blob().then(function (body) {
        init.body = body;
        args[0] = new Request(url, init);
        return fetch.apply(self, args);
      });
    };
  });
  wrapArgument(XMLHttpRequest.prototype, 'open', 1);
  wrapArgument(Navigator.prototype, 'sendBeacon', 0);
  wrapArgument(History.prototype, 'pushState', 2);
  wrapArgument(History.prototype, 'replaceState', 2);
  wrapArgument(window, 'open', 0);
  // location.assign/replace and the location.href setter are unforgeable (HTML Standard): not wrappable.

  // Constructors keep their prototype and statics, so instanceof and WebSocket.OPEN still work.
  ['EventSource', 'WebSocket', 'Worker', 'SharedWorker'].forEach(function (name) {
    wrap(window, name, function (Original) {
      function Wrapped() {
        // Without new, the original throws its usual TypeError; new.target keeps subclasses working.
        if (!new.target) return Original.apply(this, arguments);
        return Reflect.construct(Original, mapArg(arguments, 0, toPublic), new.target);
      }
      Wrapped.prototype = Original.prototype;
      Object.setPrototypeOf(Wrapped, Original);
      var constructor = { value: Wrapped, writable: true, configurable: true };
      Object.defineProperty(Original.prototype, 'constructor', constructor);
      return Wrapped;
    });
  });

  // URL-valued element properties, by interface; the attribute names are the same in lower case.
  var URL_PROPERTIES = {
    HTMLAnchorElement: ['href'],
    HTMLAreaElement: ['href'],
    HTMLLinkElement: ['href'],
    HTMLScriptElement: ['src'],
    HTMLImageElement: ['src', 'srcset'],
    HTMLIFrameElement: ['src'],
    HTMLSourceElement: ['src', 'srcset'],
    HTMLMediaElement: ['src'],
    HTMLEmbedElement: ['src'],
    HTMLTrackElement: ['src'],
    HTMLObjectElement: ['data'],
    HTMLFormElement: ['action'],
  };
  // Attribute name -> the interfaces that take a URL in it. SVG's href (<use>, <image>) has no setter.
  var BY_ATTRIBUTE = Object.create(null);
  BY_ATTRIBUTE.href = ['SVGElement'];
  function mapperFor(name) {
    return name === 'srcset' ? srcsetToPublic : toPublic;
  }
  Object.keys(URL_PROPERTIES).forEach(function (type) {
    var proto = window[type] && window[type].prototype;
    URL_PROPERTIES[type].forEach(function (name) {
      (BY_ATTRIBUTE[name] = BY_ATTRIBUTE[name] || []).push(type);
      var descriptor = proto && Object.getOwnPropertyDescriptor(proto, name);
      if (!descriptor || !descriptor.set || !descriptor.configurable || descriptor.set[MARK]) return;
      var set = descriptor.set;
      var map = mapperFor(name);
      descriptor.set = function (value) {
        set.call(this, mapArg([value], 0, map)[0]);
      };
      Object.defineProperty(descriptor.set, MARK, { value: true });
      Object.defineProperty(proto, name, descriptor);
    });
  });

  // setAttribute('src', x) on the same elements; the name is looked up first, as setAttribute is hot.
  function attributeMapper(element, name) {
    name = String(name).toLowerCase();
    var types = BY_ATTRIBUTE[name] || [];
    for (var i = 0; i < types.length; i++) {
      if (window[types[i]] && element instanceof window[types[i]]) return mapperFor(name);
    }
    return null;
  }
  wrap(Element.prototype, 'setAttribute', function (setAttribute) {
    return function (name) {
      var element = this;
      return setAttribute.apply(this, mapArg(arguments, 1, function (value) {
        var map = attributeMapper(element, name);
        return map ? map(value) : value;
      }));
    };
  });
})();
