"""Networks by name: the registry, the DC/IDC ConvNet family and the evaluation networks (ResNet, DenseNet,
VGG, AlexNet, LeNet, MLP)."""
from .registry import create_model, list_models, matching_parameters, register_model
from .convnet import ConvNet  # noqa: E402  (importing registers the ConvNet models)
from .classic import MLP, VGG, AlexNet, LeNet  # noqa: E402  (registers vgg11, vgg11_bn, alexnet, lenet, mlp)
from .resnet import ResNet  # noqa: E402  (registers resnet10_bn, resnet10_ap, resnet18_bn)
from .densenet import DenseNet  # noqa: E402  (registers densenet121)

__all__ = ["AlexNet", "ConvNet", "DenseNet", "LeNet", "MLP", "ResNet", "VGG", "create_model", "list_models",
           "matching_parameters", "register_model"]
