// Starts Swagger UI on the page apicrud serves at {base}/ui/ (apicrud/swagger_ui).
// A file of its own rather than an inline script, so the page's Content-Security-Policy
// can say script-src 'self'. The document's URL comes from the page, not the query
// string: ?url=... and ?configUrl=... are ignored (queryConfigEnabled: false).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    domNode: root,
    url: root.getAttribute("data-spec-url"),
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    queryConfigEnabled: false,
    validatorUrl: null, // no badge fetched from validator.swagger.io
    persistAuthorization: false, // a token entered in "Authorize" lives only in this tab
    displayRequestDuration: true,
    filter: true,
    tryItOutEnabled: false,
  });
})();
