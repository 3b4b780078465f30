// Markdown in the web UI: the assistant's text parsed by markdown-it (vendor/markdown-it.min.js)
// and built into the page here, element by element from its tokens, never through innerHTML.
//
// What the text can and cannot do: raw HTML in it stays text (html: false); only a fixed set of
// elements is ever created; links open only http(s) and mailto addresses, in a new tab, with no
// referrer; anything else (javascript:, data:, absolute paths) is shown as text. Images from
// elsewhere are shown as links and never loaded: an agent that reads a web page or a file can
// be told to put what it knows into an image's address, and loading the image would send it.
// Relative paths name files in the session's workspace: the page passes hooks that make those
// links open the file and those images show it (fetched through the API, with the token).
"use strict";

const Markdown = (() => {
  const parser = typeof window.markdownit === "function"
    ? window.markdownit({ html: false, linkify: true, typographer: false })
    : null;

  // markdown-it token tag -> element made for it; anything else becomes a <span>
  const TAGS = new Set(["p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "table", "thead", "tbody", "tr", "th", "td", "strong", "em", "s"]);
  const SAFE_LINK = /^(https?:\/\/|mailto:)/i;
  const HAS_SCHEME = /^[a-z][a-z0-9+.-]*:/i;
  const ALIGN = /text-align:\s*(left|center|right)/;
  const LANGUAGE = /^[\w+#.-]{1,32}$/;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The workspace path a relative link or image names ("charts/a.png"), or null.
  function workspacePath(href) {
    if (!href || HAS_SCHEME.test(href) || /^[/\\#?]/.test(href)) return null;
    let path;
    try {
      path = decodeURIComponent(href.split(/[?#]/)[0]);
    } catch (error) {
      return null;
    }
    path = path.replace(/^(\.\/)+/, "");
    if (!path || path.split("/").some((part) => part === ".." || part === "")) return null;
    return path;
  }

  function link(href, title, hooks) {
    const path = workspacePath(href);
    if (path && hooks.fileLink) return hooks.fileLink(path);
    if (href && SAFE_LINK.test(href)) {
      const anchor = element("a");
      anchor.href = href;
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer nofollow";
      anchor.title = title || href;
      return anchor;
    }
    const span = element("span", "md-link");
    if (href) span.title = href;
    return span;
  }

  function opened(token, hooks) {
    if (token.type === "link_open") {
      return link(token.attrGet("href"), token.attrGet("title"), hooks);
    }
    const node = element(TAGS.has(token.tag) ? token.tag : "span");
    if (token.tag === "ol") {
      const start = Number.parseInt(token.attrGet("start") || "", 10);
      if (Number.isFinite(start) && start !== 1) node.start = start;
    }
    if (token.tag === "th" || token.tag === "td") {
      const align = ALIGN.exec(token.attrGet("style") || "");
      if (align) node.className = "align-" + align[1];
    }
    return node;
  }

  function leaf(token, hooks) {
    switch (token.type) {
      case "text":
        return document.createTextNode(token.content);
      case "code_inline": {
        // code that could be a workspace path (`top10.csv`): the page decides if it is one
        const path = hooks.fileCode && !/\s/.test(token.content)
          ? workspacePath(token.content) : null;
        return path ? hooks.fileCode(path, token.content) : element("code", null, token.content);
      }
      case "softbreak":
      case "hardbreak":
        return element("br");
      case "fence":
      case "code_block": {
        const pre = element("pre");
        const language = (token.info || "").trim().split(/\s+/)[0];
        const code = element("code", LANGUAGE.test(language) ? "language-" + language : null,
          token.content.replace(/\n$/, ""));
        pre.append(code);
        return pre;
      }
      case "hr":
        return element("hr");
      case "image": {
        const path = workspacePath(token.attrGet("src"));
        if (path && hooks.fileImage) return hooks.fileImage(path, token.content);
        const anchor = link(token.attrGet("src"), token.attrGet("title"), {});
        anchor.textContent = "image: " + (token.content || token.attrGet("src") || "");
        anchor.classList.add("md-image");
        return anchor;
      }
      default: // html_block / html_inline cannot occur with html: false; kept as text anyway
        return token.content ? document.createTextNode(token.content) : null;
    }
  }

  function build(tokens, root, hooks) {
    const stack = [root];
    for (const token of tokens) {
      const parent = stack[stack.length - 1];
      if (token.type === "inline") {
        build(token.children || [], parent, hooks);
      } else if (token.nesting === 1) {
        // the paragraphs of a tight list are hidden: their text goes straight into the <li>
        const node = token.hidden ? parent : opened(token, hooks);
        if (node !== parent) parent.append(node);
        stack.push(node);
      } else if (token.nesting === -1) {
        if (stack.length > 1) stack.pop();
      } else {
        const node = leaf(token, hooks);
        if (node) parent.append(node);
      }
    }
  }

  // Replace target's content with text rendered as Markdown (as plain text if the parser
  // did not load). hooks.fileLink(path) and hooks.fileImage(path, alt) make the elements for
  // links and images that name workspace files; without them those are shown as text.
  // hooks.fileCode(path, text) makes the element for inline code that could name one.
  function render(target, text, hooks = {}) {
    if (!parser) {
      target.textContent = text;
      return;
    }
    const fragment = document.createDocumentFragment();
    build(parser.parse(text, {}), fragment, hooks);
    target.replaceChildren(fragment);
  }

  return { render, available: parser !== null };
})();
