// Run the page's own inline scripts (as a browser would, with no network), then render its first
// vega-lite spec to SVG with the vega and vega-lite they define. Prints the SVG.
const fs = require("fs"), vm = require("vm");
const html = fs.readFileSync(process.argv[2], "utf8");
const ctx = { console, setTimeout, clearTimeout };
ctx.self = ctx;  // no window: vega then renders headless
vm.createContext(ctx);
// the libraries: the attribute-less <script> elements (the plots are <script type = "text/javascript">)
for (const m of html.matchAll(/<script>([\s\S]*?)<\/script>/g)) vm.runInContext(m[1], ctx);
if (!ctx.vega || !ctx.vegaLite || !ctx.vegaEmbed) throw new Error("the page did not define vega, vegaLite and vegaEmbed");
const spec = JSON.parse(html.match(/var spec = (\{.*\});\n/)[1]);
const view = new ctx.vega.View(ctx.vega.parse(ctx.vegaLite.compile(spec).spec), { renderer: "none" });
view.toSVG().then((svg) => process.stdout.write(svg));
