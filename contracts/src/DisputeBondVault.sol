// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title DisputeBondVault
/// @notice Holds the bonds of open disputes against a DroughtInsurancePool's reports, apart from the
///         pool's capital: its token balance is exactly the sum of the open bonds. Only the pool that
///         created it moves tokens out (`pay`), once per bond: back to the watcher when the dispute is
///         upheld, to the pool when it is rejected.
contract DisputeBondVault {
    using SafeERC20 for IERC20;

    IERC20 public immutable token;
    address public immutable pool;

    error NotPool(address caller);

    constructor(IERC20 token_) {
        token = token_;
        pool = msg.sender;
    }

    function pay(address to, uint256 amount) external {
        if (msg.sender != pool) revert NotPool(msg.sender);
        token.safeTransfer(to, amount);
    }
}
