// The monitor panel: the financial sentiment monitor's dashboard: topic time series and alerts.
// Loaded after i18n.js and app.js: uses their helpers ($, api, getJSON, postJSON, element, t, label, addLabels,
// TAB_OPENERS). Its words go through addLabels({en: {…}, zh: {…}}).
"use strict";
