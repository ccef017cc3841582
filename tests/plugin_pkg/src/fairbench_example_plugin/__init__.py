"""A third-party method plugin: a linear probe on frozen backbone features."""

from fairfacebench import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import cross_entropy
from fairfacebench.training import Predictor


class LinearProbe(Method):
    name = "linear-probe"
    description = "Cross-entropy on a linear head over frozen pretrained features"
    citation = "Kornblith et al., Do Better ImageNet Models Transfer Better?, CVPR 2019"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        for p in model.backbone.parameters():
            p.requires_grad_(False)

        def loss(m, b):
            m.backbone.eval()  # frozen batch-norm statistics too
            return cross_entropy(m.heads["target"](m.backbone(b.x)), b).mean()

        ctx.train_classifier(model, ctx.budget.remaining, loss)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [LinearProbe]
