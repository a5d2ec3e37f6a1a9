using PeftSharp.Reporting;
using PeftSharp.Studies;

namespace PeftSharp.Tests.Reporting;

public class ChartTests
{
    [Fact]
    public void A_log_x_line_chart_puts_each_point_where_the_axes_say()
    {
        // Plot area: x from 60 to 760 − 150 = 610 (550 px), y from 380 − 50 = 330 (bottom) up to 20 (310 px).
        // log x: decades 0 (x ≤ 1) to 3 → 550 / 3 px a decade, so x = 1, 10, 100, 1000 at 60, 243.3, 426.7, 610.
        // y: 50 → 70 (rounded out to multiples of 5), 15.5 px a point, so 50, 55, 60, 70 at 330, 252.5, 175, 20.
        var chart = SvgChart.All(Charts.LineChart(
            [new ChartSeries("lora", [(1, 50), (10, 60), (100, 70)]), new ChartSeries("full", [(1000, 55)])],
            "trainable parameters", "test top-1 %", logX: true)).Single();

        Assert.Equal(2, chart.Lines.Count);
        Assert.Equal([(60.0, 330.0), (243.3, 175.0), (426.7, 20.0)], chart.Lines[0]);
        Assert.Equal([(610.0, 252.5)], chart.Lines[1]);
        // One marked point per data point, on its line, titled with its values.
        Assert.Equal([new SvgPoint(60, 330, "lora: 50.00 at 1"), new SvgPoint(243.3, 175, "lora: 60.00 at 10"), new SvgPoint(426.7, 20, "lora: 70.00 at 100")],
                     chart.PointsOf("lora"));
        Assert.Equal([new SvgPoint(610, 252.5, "full: 55.00 at 1000")], chart.PointsOf("full"));
        // Axis titles, the decade ticks, the y ticks from 50 to 70 (every 2 points: 20 / 10) and one legend entry a series.
        Assert.Contains("trainable parameters", chart.Texts);
        Assert.Contains("test top-1 %", chart.Texts);
        Assert.Equal(["≤1", "1e1", "1e2", "1e3"], chart.Texts.Take(4));
        Assert.Equal(Enumerable.Range(0, 11).Select(i => (50 + 2 * i).ToString()), chart.Texts.Skip(4).Take(11));
        Assert.Equal(["lora", "full"], chart.Texts.TakeLast(2));
    }

    [Fact]
    public void A_linear_x_line_chart_keeps_the_data_order_and_spans_the_data()
    {
        // x 0 → 1 over 550 px: 0, 0.5, 1 at 60, 335, 610; y 40 → 45 over 310 px: 40, 45, 42 at 330, 20, 206.
        var chart = SvgChart.All(Charts.LineChart([new ChartSeries("lora", [(0, 40), (0.5, 45), (1, 42)])], "α", "shifted mean", logX: false)).Single();
        Assert.Equal([(60.0, 330.0), (335.0, 20.0), (610.0, 206.0)], chart.Lines.Single());
        Assert.Equal(["0", "0.2", "0.4", "0.6", "0.8", "1"], chart.Texts.Take(6));
        Assert.Equal("<p>no data</p>", Charts.LineChart([], "x", "y", logX: false));
    }
}
