// Forecast against truth on a canvas, redrawn after every step. `series`: [{name, color, points: [number|null]}].
'use strict';
function drawPlot(canvas, series, length, title) {
  const ctx = canvas.getContext('2d'), W = canvas.width, H = canvas.height, pad = 40;
  const values = series.flatMap((s) => s.points.filter((v) => v !== null && Number.isFinite(v)));
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = '#222';
  ctx.font = '13px sans-serif';
  ctx.fillText(title, pad, 20);
  if (!values.length) return;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (i) => pad + (i / Math.max(1, length - 1)) * (W - 2 * pad);
  const y = (v) => H - pad - ((v - lo) / (hi - lo)) * (H - 2 * pad);
  ctx.strokeStyle = '#999';
  ctx.beginPath(); ctx.moveTo(pad, pad); ctx.lineTo(pad, H - pad); ctx.lineTo(W - pad, H - pad); ctx.stroke();
  ctx.fillText(hi.toPrecision(3), 2, pad + 4);
  ctx.fillText(lo.toPrecision(3), 2, H - pad);
  ctx.fillText('step', W - pad - 20, H - pad + 18);
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    s.points.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { drawing = false; return; }
      if (drawing) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
      drawing = true;
    });
    ctx.stroke();
    ctx.fillStyle = s.color;
    ctx.fillText(s.name, W - pad - 160, pad + 16 * k);
  });
}
