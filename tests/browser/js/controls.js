() => {
  function rgba(s) { const m = s.match(/[\d.]+/g) || [0,0,0,0];
    return m.length < 4 ? [+m[0], +m[1], +m[2], 1] : m.slice(0, 4).map(Number); }
  function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); }
  function bg(el) {
    let layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let base = [255, 255, 255];
    for (const c of layers.reverse()) base = base.map((v, i) => c[i] * c[3] + v * (1 - c[3]));
    return base;
  }
  const bad = [];
  const width = document.documentElement.clientWidth;
  document.querySelectorAll('button, a, input:not([type=hidden]), select, label, .tick').forEach(el => {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || st.visibility === 'hidden') return;
    const name = (el.innerText || el.value || el.getAttribute('aria-label') || el.tagName).trim().slice(0, 40);
    if (r.left < -1 || r.right > width + 1) bad.push(`${name}: outside the page (${Math.round(r.left)}..${Math.round(r.right)} of ${width})`);
    const fg = rgba(st.color), back = bg(el);
    const f = fg.slice(0, 3).map((v, i) => v * fg[3] + back[i] * (1 - fg[3]));
    const [l1, l2] = [lum(f), lum(back)].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    if (ratio < 4.5) bad.push(`${name}: contrast ${ratio.toFixed(2)}:1`);
  });
  if (document.documentElement.scrollWidth > width + 1) bad.push(`page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
  return bad;
}
