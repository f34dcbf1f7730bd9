
(function () {
  "use strict";
  var main = document.querySelector("main");
  var cards = {};

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function newCard(id) {
    var card = el("article", "card");
    card.dataset.shot = id;
    var figure = el("figure");
    var img = el("img");
    img.alt = id;
    var missing = el("div", "missing", "no keyframe yet");
    figure.append(img, missing, el("span", "status"));
    var body = el("div", "body");
    var title = el("h2");
    title.append(el("span", "id", id), el("span", "scene"));
    var bar = el("div", "bar");
    bar.append(el("i"));
    body.append(title, el("p", "action"), el("p", "camera"), el("ul", "said"), el("p", "running-note"),
                el("ul", "nodes"));
    card.append(figure, bar, body);
    return card;
  }

  function renderCard(card, shot, labels) {
    card.className = "card " + shot.status;
    card.dataset.status = shot.status;
    var img = card.querySelector("figure img");
    var missing = card.querySelector("figure .missing");
    if (shot.keyframe) {
      if (img.getAttribute("src") !== shot.keyframe) { img.setAttribute("src", shot.keyframe); }
      img.style.display = "";
      missing.style.display = "none";
    } else {
      img.removeAttribute("src");
      img.style.display = "none";
      missing.style.display = "";
    }
    img.classList.toggle("stale", !!shot.keyframe_stale);
    var progress = shot.running.length ? shot.running[0].progress : null;
    var label = shot.status + (progress ? " " + Math.round(progress * 100) + "%" : "");
    var status = card.querySelector(".status");
    status.className = "status " + shot.status;
    status.textContent = label;
    card.querySelector(".bar i").style.width = Math.round((progress || 0) * 100) + "%";
    card.querySelector(".scene").textContent = labels.scene + " " + shot.scene;
    card.querySelector(".missing").textContent = labels.no_keyframe;
    card.querySelector(".action").textContent = shot.action;
    var camera = card.querySelector(".camera");
    camera.textContent = shot.camera ? labels.camera + ": " + shot.camera : "";
    camera.style.display = shot.camera ? "" : "none";
    var said = card.querySelector(".said");
    said.replaceChildren.apply(said, shot.said.map(function (line) {
      var item = el("li", line.who ? "" : "narration");
      item.append(el("b", "", line.who || labels.narration), document.createTextNode(line.text));
      return item;
    }));
    card.querySelector(".running-note").textContent = shot.running.map(function (node) {
      return node.id + (node.message ? " · " + node.message : "");
    }).join("  ");
    var nodes = card.querySelector(".nodes");
    nodes.replaceChildren.apply(nodes, shot.nodes.map(function (node) {
      var badge = el("li", "badge " + node.status, node.id.split(":")[0] +
                     (node.id.indexOf("line:") === 0 ? " " + node.id.split(":").pop() : "") + " · " + node.status);
      badge.title = node.id + (node.error ? " — " + node.error : "");
      return badge;
    }));
  }

  function renderEpisode(episode) {
    var player = document.getElementById("player");
    var video = player.querySelector("video");
    if (!episode) { return; }
    if (video.dataset.digest === episode.digest) { return; }
    var at = video.currentTime || 0;
    video.dataset.digest = episode.digest;
    video.src = episode.url;
    video.addEventListener("loadedmetadata", function () {
      video.currentTime = Math.min(at, video.duration || 0);
    }, { once: true });
    player.classList.add("shown");
  }

  function render(state) {
    document.title = state.title + " · fanren watch";
    document.documentElement.lang = state.language === "zh" ? "zh-CN" : "en";
    document.getElementById("title").textContent = state.title;
    document.getElementById("profile").textContent = state.labels.profile + ": " + state.profile;
    var badge = document.getElementById("state");
    badge.className = state.building ? "building" : "";
    badge.textContent = state.building ? "building…" : state.summary;
    var banner = document.getElementById("banner");
    banner.textContent = state.error || "";
    banner.classList.toggle("shown", !!state.error);
    renderEpisode(state.episode);
    var seen = {};
    state.shots.forEach(function (shot, index) {
      var card = cards[shot.id] || (cards[shot.id] = newCard(shot.id));
      seen[shot.id] = true;
      renderCard(card, shot, state.labels);
      if (main.children[index] !== card) { main.insertBefore(card, main.children[index] || null); }
    });
    Object.keys(cards).forEach(function (id) {
      if (!seen[id]) { cards[id].remove(); delete cards[id]; }
    });
    var others = document.getElementById("others");
    others.replaceChildren.apply(others, state.others.map(function (node) {
      return el("li", "badge " + node.status, node.id + " · " + node.status);
    }));
    document.body.dataset.version = state.version;
  }

  var source = new EventSource("/events");
  source.onmessage = function (event) { render(JSON.parse(event.data)); };
  source.onerror = function () {
    var badge = document.getElementById("state");
    badge.className = "offline";
    badge.textContent = "disconnected: is fanren watch still running?";
  };
})();
