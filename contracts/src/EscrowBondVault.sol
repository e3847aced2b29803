// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title EscrowBondVault
/// @notice Holds the bonds of open disputes against a ColdChainEscrow's verdicts, apart from the
///         shipments' deposits. A bond is in its shipment's token, so the vault holds several tokens: per
///         token its balance is exactly the sum of that token's open bonds. Only the escrow that created it
///         moves tokens out (`pay`), once per bond: back to the watcher when the dispute is upheld, to the
///         party the frozen verdict pays when it is rejected.
contract EscrowBondVault {
    using SafeERC20 for IERC20;

    address public immutable escrow;

    error NotEscrow(address caller);

    constructor() {
        escrow = msg.sender;
    }

    function pay(IERC20 token, address to, uint256 amount) external {
        if (msg.sender != escrow) revert NotEscrow(msg.sender);
        token.safeTransfer(to, amount);
    }
}
