// Starts Swagger UI on /docs, rendering the repository's openapi.yaml served beside this page. A file of its own,
// not an inline <script>: the static files' Content-Security-Policy runs scripts from this origin only.
window.ui = SwaggerUIBundle({ url: "/openapi.yaml", dom_id: "#swagger-ui", deepLinking: true });
