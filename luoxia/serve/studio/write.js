// The write panel: the writing assistant: genre, keywords, draft/continue/rewrite/polish, with a diff view.
// Loaded after i18n.js and app.js: uses their helpers ($, api, getJSON, postJSON, element, t, label, addLabels,
// TAB_OPENERS). Its words go through addLabels({en: {…}, zh: {…}}).
"use strict";
