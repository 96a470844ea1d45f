() => {
  const out = [];
  document.querySelectorAll('svg.chart').forEach((svg, n) => {
    const vb = svg.viewBox.baseVal;
    const boxes = [...svg.querySelectorAll('text')].map(t => {
      const b = t.getBBox(); return {x: b.x, y: b.y, w: b.width, h: b.height, s: t.textContent};
    });
    boxes.forEach((a, i) => {
      if (a.x < vb.x - 0.5 || a.y < vb.y - 0.5 || a.x + a.w > vb.x + vb.width + 0.5
          || a.y + a.h > vb.y + vb.height + 0.5) out.push(`chart ${n}: "${a.s}" leaves the picture`);
      boxes.slice(i + 1).forEach(b => {
        if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h)
          out.push(`chart ${n}: "${a.s}" overlaps "${b.s}"`);
      });
    });
  });
  return out;
}
